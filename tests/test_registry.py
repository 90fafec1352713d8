"""Registry entries are data: built-ins load and validate, a dropped-in file appears with no code
change, and malformed files fail naming the file and the field."""
from __future__ import annotations

import json
import re

import pytest
from _models import tiny_entry_data, write_entry

from serbench import registry
from serbench.cli import main
from serbench.errors import SerbenchError

HUB_MODELS = {"distilhubert": ("ntu-spml/distilhubert", 23_491_968),
              "wav2vec2-base": ("facebook/wav2vec2-base", 94_371_712),
              "hubert-base": ("facebook/hubert-base-ls960", 94_371_712)}


def test_builtin_models_and_recipes_load():
    models = {m.name: m for m in registry.models()}
    assert {"distilhubert", "wav2vec2-base", "hubert-base", "egemaps", "tiny"} <= set(models)
    for name, (hub_id, params) in HUB_MODELS.items():
        m = models[name]
        assert m.hub_id == hub_id and m.params == params and m.licence
        assert re.fullmatch(r"[0-9a-f]{40}", m.revision), f"{name}: revision must be a pinned commit"
    assert models["distilhubert"].config["num_hidden_layers"] == 2
    assert models["egemaps"].weight_free and models["egemaps"].dim == 88
    recipes = {r.name: r for r in registry.recipes()}
    assert {"fp32", "fp16", "dynamic-int8", "static-int8", "inc-int8"} <= set(recipes)
    assert recipes["static-int8"].calibration and recipes["inc-int8"].calibration
    assert not recipes["dynamic-int8"].calibration


def test_static_int8_quantises_only_conv_and_matmul():
    """The default op list also quantises Add/Mul and wrecks the embeddings (see the recipe)."""
    opts = registry.load_recipe("static-int8").options
    assert opts["op_types_to_quantize"] == ["Conv", "MatMul"]
    assert opts["quant_format"] == "QDQ" and opts["per_channel"] is True
    assert registry.load_recipe("dynamic-int8").options["weight_type"] == "QUInt8"


def test_new_yaml_appears_in_serbench_models_without_code_change(tmp_path, monkeypatch, capsys):
    write_entry(tmp_path, "models", "my-tiny", tiny_entry_data(name="my-tiny", description="dropped in"))
    write_entry(tmp_path, "recipes", "my-fp32", {"name": "my-fp32", "backend": "onnxruntime", "method": "fp32"})
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["my-tiny"]["description"] == "dropped in" and "distilhubert" in rows
    assert main(["models", "--recipes", "--json"]) == 0
    assert "my-fp32" in {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert main(["models"]) == 0
    assert "my-tiny" in capsys.readouterr().out


def test_later_registry_folder_overrides_builtin(tmp_path, monkeypatch):
    write_entry(tmp_path, "models", "tiny", tiny_entry_data(description="overridden"))
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    assert registry.load_model("tiny").description == "overridden"


def test_unknown_name_lists_known_ones():
    with pytest.raises(SerbenchError, match=r"unknown model 'nope'.*distilhubert"):
        registry.load_model("nope")
    with pytest.raises(SerbenchError, match=r"unknown recipe 'nope'.*static-int8"):
        registry.load_recipe("nope")


@pytest.mark.parametrize("kind,data,field", [
    ("models", {"kind": "transformers", "licence": "x", "config": {}, "params": 1}, "model_class"),
    ("models", {"kind": "transformers", "licence": "x", "model_class": "HubertModel", "config": {},
                "params": "many"}, "params"),
    ("models", {"kind": "tensorflow", "licence": "x"}, "kind"),
    ("models", {"kind": "opensmile", "licence": "x", "feature_set": "eGeMAPSv02"}, "dim"),
    ("recipes", {"backend": "onnxruntime"}, "method"),
    ("recipes", {"backend": "tensorrt", "method": "fp32"}, "backend"),
    ("recipes", {"backend": "onnxruntime", "method": "static", "options": {"per_chanel": True}}, "options"),
    ("recipes", {"backend": "onnxruntime", "method": "fp32", "calibration": "yes"}, "calibration"),
])
def test_malformed_entry_names_file_and_field(tmp_path, monkeypatch, kind, data, field):
    path = write_entry(tmp_path, kind, "broken", data)
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    load = registry.load_model if kind == "models" else registry.load_recipe
    with pytest.raises(SerbenchError) as err:
        load("broken")
    assert str(path) in str(err.value) and repr(field) in str(err.value)


def test_bad_yaml_and_name_mismatch_are_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    path = write_entry(tmp_path, "recipes", "garbled", "backend: [unclosed\n")
    with pytest.raises(SerbenchError, match="not valid YAML") as err:
        registry.load_recipe("garbled")
    assert str(path) in str(err.value)
    write_entry(tmp_path, "models", "renamed", tiny_entry_data(name="other"))
    with pytest.raises(SerbenchError, match="'name' is 'other'"):
        registry.load_model("renamed")
    assert main(["models"]) == 2  # listing validates every entry, and the CLI says which failed
    assert "renamed.yaml" in capsys.readouterr().err
