"""One schema validator for every data file: a misspelt key is an error naming the file and the
field (never silently ignored), values are checked at load, and model entries resolve `input`."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from _models import write_entry

from serbench import labels, protocols, registry, schema
from serbench.artefacts import methods
from serbench.artefacts import onnxruntime as ort_methods
from serbench.errors import SerbenchError
from serbench.schema import Field


def _builtin(kind: str, name: str) -> dict:
    """A shipped entry's YAML content, as a dict to edit."""
    if kind == "protocols":
        return yaml.safe_load(Path(protocols.available()[name]).read_text())
    files = {"models": registry.model_files, "recipes": registry.recipe_files,
             "labelmaps": labels.available}[kind]()
    return yaml.safe_load(files[name].read_text())


def _load(kind: str, path: Path):
    return {"models": registry.load_model, "recipes": registry.load_recipe, "labelmaps": labels.load,
            "protocols": protocols.load}[kind](str(path))


def _rejects(kind: str, path: Path, field: str) -> str:
    with pytest.raises(SerbenchError) as err:
        _load(kind, path)
    msg = str(err.value)
    assert str(path) in msg and f"field '{field}'" in msg, msg
    return msg


# (kind, shipped entry, a real key, its misspelling)
TYPOS = [
    ("models", "tiny", "normalize", "normalise"),
    ("models", "distilhubert", "revision", "revison"),
    ("recipes", "static-int8", "calibration", "calibraton"),
    ("labelmaps", "ravdess-4class", "map", "mapping"),
    ("protocols", "loso", "seed", "seeds"),
]


@pytest.mark.parametrize("kind,entry,key,typo", TYPOS)
def test_misspelt_key_is_rejected_naming_file_field_and_the_right_key(tmp_path, monkeypatch, kind, entry, key, typo):
    data = _builtin(kind, entry)
    assert key in data  # the fixture really has the key being misspelt
    data[typo] = data.pop(key)
    data["name"] = "typo"
    path = write_entry(tmp_path, kind, "typo", data)
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    msg = _rejects(kind, path, typo)
    assert "unknown field" in msg and f"did you mean {key!r}?" in msg


@pytest.mark.parametrize("kind,entry", sorted({(k, e) for k, e, _, _ in TYPOS}))
def test_the_unmodified_fixtures_load_from_a_user_folder(tmp_path, monkeypatch, kind, entry):
    """The typo tests fail because of the typo, not because a copied entry does not load."""
    path = write_entry(tmp_path, kind, "copy", {**_builtin(kind, entry), "name": "copy"})
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    assert _load(kind, path).name == "copy"


def test_recipe_option_values_are_checked_at_load(tmp_path, monkeypatch):
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    base = _builtin("recipes", "static-int8")
    good = base["options"]["weight_type"]
    bad = good[:2] + good[2:].swapcase()  # QInt8 -> QiNT8: what a user mistypes
    assert bad not in ort_methods.QUANT_TYPES
    for option, value in [("weight_type", bad), ("activation_type", bad)]:
        path = write_entry(tmp_path, "recipes", "bad",
                           {**base, "name": "bad", "options": {**base["options"], option: value}})
        msg = _rejects("recipes", path, f"options.{option}")
        assert all(t in msg for t in ort_methods.QUANT_TYPES) and f"did you mean {good!r}" in msg
    for option, value in [("quant_format", "QDQQ"), ("calibrate_method", "minmax"), ("per_channel", "yes"),
                          ("calibrate_percentile", 0), ("calibrate_percentile", 100.5), ("opset", True),
                          ("opset", 17.0), ("op_types_to_quantize", "Conv"), ("nodes_to_exclude", [3]),
                          ("max_calibration_clips", 0)]:
        path = write_entry(tmp_path, "recipes", "bad",
                           {**base, "name": "bad", "options": {**base["options"], option: value}})
        _rejects("recipes", path, f"options.{option}" + ("[0]" if isinstance(value, list) else ""))


def test_dynamic_recipe_weight_type_typo_fails_at_load_not_in_bench(tmp_path, monkeypatch):
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    base = _builtin("recipes", "dynamic-int8")
    options = {**base["options"], "weight_type": "QUint8"}
    path = write_entry(tmp_path, "recipes", "dyn", {**base, "name": "dyn", "options": options})
    msg = _rejects("recipes", path, "options.weight_type")
    assert "must be one of " + ", ".join(ort_methods.QUANT_TYPES) in msg


def test_allowed_onnxruntime_names_are_the_ones_the_backend_looks_up():
    q = pytest.importorskip("onnxruntime.quantization")
    assert set(ort_methods.QUANT_TYPES) <= set(q.QuantType.__members__)
    assert set(ort_methods.QUANT_FORMATS) <= set(q.QuantFormat.__members__)
    assert set(ort_methods.CALIBRATE_METHODS) <= set(q.CalibrationMethod.__members__)


def test_every_recipe_option_name_has_a_value_spec():
    for backend, declared in methods.backends().items():
        for method, spec in declared.items():
            assert all(isinstance(f, Field) for f in spec.options), (backend, method)
            assert len({f.name for f in spec.options}) == len(spec.options), (backend, method)


def test_preprocess_defaults_match_audio_preprocess():
    from serbench import audio

    fields = {f.name: f.default for f in dataclasses.fields(audio.Preprocess) if f.name != "sample_rate"}
    assert registry.PREPROCESS_DEFAULTS == fields


def test_model_input_resolves_every_step():
    from serbench import audio

    defaults = {f.name: f.default for f in dataclasses.fields(audio.Preprocess) if f.name != "sample_rate"}
    for entry in registry.models():
        written = entry.content.get("input") or {}
        assert entry.input == {**defaults, **written}, entry.name
        pre = audio.Preprocess(sample_rate=entry.sample_rate, **entry.input)
        assert dataclasses.asdict(pre) == {"sample_rate": entry.sample_rate, **entry.input}
    egemaps = registry.load_model("egemaps")
    assert set(egemaps.content["input"]) == set(defaults)
    assert egemaps.input == dict.fromkeys(defaults)  # every step off
    assert egemaps.head == egemaps.content["head"]


def test_model_input_partial_unknown_and_bad_values(tmp_path, monkeypatch):
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    base = _builtin("models", "tiny")
    path = write_entry(tmp_path, "models", "m", {**base, "name": "m", "input": {"seconds": 4, "preemphasis": None}})
    entry = registry.load_model("m")
    assert entry.input == {**registry.PREPROCESS_DEFAULTS, "seconds": 4.0, "preemphasis": None}
    assert isinstance(entry.input["seconds"], float)
    for bad, field in [({"trim": 20}, "input.trim"), ({"seconds": "8"}, "input.seconds"),
                       ({"peak": True}, "input.peak"), ({"peak": 1.5}, "input.peak"),
                       ({"seconds": 0}, "input.seconds"), ([8.0], "input")]:
        write_entry(tmp_path, "models", "m", {**base, "name": "m", "input": bad})
        msg = _rejects("models", path, field)
        if field == "input.trim":
            assert "did you mean 'trim_db'?" in msg


def test_model_head_and_strict_types(tmp_path, monkeypatch):
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    base = _builtin("models", "tiny")
    path = write_entry(tmp_path, "models", "m", {**base, "name": "m", "head": "mlp"})
    assert registry.load_model("m").head == "mlp"
    assert registry.load_model("tiny").head is None
    for key, value in [("head", ""), ("head", 3), ("params", True), ("normalize", 1), ("sample_rate", 16000.0)]:
        write_entry(tmp_path, "models", "m", {**base, "name": "m", key: value})
        _rejects("models", path, key)
    # a field of the other model kind is unknown, not ignored
    write_entry(tmp_path, "models", "m", {**_builtin("models", "egemaps"), "name": "m", "params": 1})
    _rejects("models", path, "params")


def test_label_map_needs_an_explicit_map(tmp_path, monkeypatch):
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    identity = _builtin("labelmaps", "identity")
    assert "map" in identity and identity["map"] is None  # the documented identity map is explicit
    write_entry(tmp_path, "labelmaps", "ident", {**identity, "name": "ident"})
    assert labels.load("ident").mapping is None and labels.load("ident")("x") == "x"
    no_map = {k: v for k, v in identity.items() if k != "map"}
    path = write_entry(tmp_path, "labelmaps", "nomap", {**no_map, "name": "nomap"})
    assert "required" in _rejects("labelmaps", path, "map")
    base = _builtin("labelmaps", "ravdess-4class")
    path = write_entry(tmp_path, "labelmaps", "renamed", {**base, "name": "other"})
    with pytest.raises(SerbenchError, match="'name' is 'other'.*must match the file name") as err:
        labels.load("renamed")
    assert str(path) in str(err.value)
    path = write_entry(tmp_path, "labelmaps", "dup", {**base, "name": "dup", "classes": base["classes"] * 2})
    _rejects("labelmaps", path, "classes")
    raw = next(iter(base["map"]))
    path = write_entry(tmp_path, "labelmaps", "nullcls", {**base, "name": "nullcls", "map": {**base["map"], raw: None}})
    _rejects("labelmaps", path, f"map.{raw}")
    path = write_entry(tmp_path, "labelmaps", "desc", {**base, "name": "desc", "description": "with a description"})
    assert labels.load("desc").mapping == labels.load("ravdess-4class").mapping


def test_protocol_nested_typo_names_the_dotted_field(tmp_path):
    data = _builtin("protocols", "loso")
    data["split"]["n_fold"] = data["split"].pop("n_folds")
    path = tmp_path / "loso.yaml"
    path.write_text(yaml.safe_dump(data))
    msg = _rejects("protocols", path, "split.n_fold")
    assert "did you mean 'n_folds'?" in msg


# -- the validator itself, as another kind (e.g. heads) would use it -----------------------------

FIELDS = (
    Field("name", str),
    Field("layers", int, default=1, check=schema.positive),
    Field("dropout", float, default=0.1, check=schema.within(0, 1, lo_open=False, hi_open=True)),
    Field("act", str, default="relu", choices=("relu", "gelu")),
    Field("opt", dict, fields=(Field("lr", float, required=True), Field("wd", float, nullable=True, default=0.0))),
)


def test_validate_defaults_nesting_and_conversion(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump({"layers": 2, "dropout": 0, "opt": {"lr": 1, "wd": None}}))
    raw, values = schema.load_entry(path, FIELDS)
    assert raw["name"] == "h"
    assert values == {"name": "h", "layers": 2, "dropout": 0.0, "act": "relu", "opt": {"lr": 1.0, "wd": None}}
    assert isinstance(values["dropout"], float) and isinstance(values["opt"]["lr"], float)
    for data, field, why in [
        ({"layers": True}, "layers", "must be an integer"),
        ({"layers": 0}, "layers", "must be positive"),
        ({"dropout": 1}, "dropout", "must be in [0, 1)"),
        ({"act": "Gelu"}, "act", "did you mean 'gelu'?"),
        ({"opt": {}}, "opt.lr", "required"),
        ({"opt": {"lr": 1, "momentum": 0.9}}, "opt.momentum", "unknown field in 'opt' (known: lr, wd)"),
        ({"layer": 2}, "layer", "did you mean 'layers'?"),
    ]:
        with pytest.raises(SerbenchError) as err:
            schema.validate(data, FIELDS, path)
        assert str(err.value).startswith(f"{path}: field '{field}': ") and why in str(err.value), str(err.value)
