"""Backbones from entries: where the weights came from is always recorded, random weights only
when asked, hub failure is immediate and names the options, parameter counts are checked."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _models import clips, save_tiny, tiny_entry_data, write_entry

from serbench import backbones, registry
from serbench.errors import SerbenchError


@pytest.fixture(scope="module")
def tiny():
    return registry.load_model("tiny")


def test_parse_weights():
    assert backbones.parse_weights(None) == {"kind": "hub"}
    assert backbones.parse_weights("random") == {"kind": "random", "seed": 0}
    assert backbones.parse_weights("random:7") == {"kind": "random", "seed": 7}
    with pytest.raises(SerbenchError, match="integer"):
        backbones.parse_weights("random:abc")
    with pytest.raises(SerbenchError, match=r"no such file.*--weights hub.*--weights PATH.*random"):
        backbones.parse_weights("/no/such/folder")


def test_random_weights_are_seeded_and_labelled(tiny):
    a, prov = backbones.build(tiny, "random:5")
    b, _ = backbones.build(tiny, "random:5")
    c, _ = backbones.build(tiny, "random:6")
    assert prov["kind"] == "random" and prov["seed"] == 5 and backbones.is_random(prov)
    assert "RANDOM-INIT" in backbones.describe(prov) and "RANDOM" in prov["label"]
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert not a.training


def test_local_save_pretrained_folder_round_trips_with_hash(tiny, tmp_path):
    folder = save_tiny(tmp_path / "tiny", seed=3)
    model, prov = backbones.build(tiny, str(folder))
    assert prov["kind"] == "local" and prov["path"] == str(folder.resolve()) and len(prov["sha256"]) == 64
    assert "local" in backbones.describe(prov)
    torch.manual_seed(3)
    saved = type(model).from_pretrained(folder).state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    other = backbones.provenance(tiny, str(save_tiny(tmp_path / "other", seed=4)))
    assert other["sha256"] != prov["sha256"]


def test_checkpoint_file_loads_into_entry_architecture(tiny, tmp_path):
    src, _ = backbones.build(tiny, "random:9")
    ckpt = tmp_path / "head_model.pt"
    torch.save({f"{src.base_model_prefix}.{k}": v for k, v in src.state_dict().items()}, ckpt)  # a *ForX model
    model, prov = backbones.build(tiny, str(ckpt))
    assert prov["kind"] == "local" and all(torch.equal(v, src.state_dict()[k]) for k, v in model.state_dict().items())
    bad = tmp_path / "bad.pt"
    torch.save({"something.else": torch.zeros(3)}, bad)
    with pytest.raises(SerbenchError, match="does not fit"):
        backbones.build(tiny, str(bad))


def test_hub_failure_offline_is_immediate_and_names_the_options(tmp_path, monkeypatch):
    """Nothing cached + HF_HUB_OFFLINE: a clear error, never a silent random init."""
    write_entry(tmp_path, "models", "hubonly", tiny_entry_data(name="hubonly", hub_id="serbench-tests/not-cached",
                                                               revision="0" * 40))
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = registry.load_model("hubonly")
    with pytest.raises(SerbenchError) as err:
        backbones.build(entry, "hub")
    msg = str(err.value)
    assert "serbench-tests/not-cached" in msg and "HF_HUB_OFFLINE" in msg
    assert "--weights hub" not in msg and "--weights PATH" in msg and "--weights random" in msg   # hub just failed
    with pytest.raises(SerbenchError, match="no hub_id"):
        backbones.build(registry.load_model("tiny"), "hub")


def test_hub_failure_via_cli_builds_nothing(tmp_path, monkeypatch, capsys):
    from serbench import paths
    from serbench.cli import main

    write_entry(tmp_path, "models", "hubonly", tiny_entry_data(name="hubonly", hub_id="serbench-tests/not-cached",
                                                               revision="0" * 40))
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["bench", "--model", "hubonly", "--recipe", "fp32", "--no-energy", "--no-rss"]) == 2
    err = capsys.readouterr().err
    assert "serbench bench: error: cannot load serbench-tests/not-cached" in err
    assert "--weights random" in err and "--weights PATH" in err
    assert not (paths.home() / "artefacts").exists()


def test_parameter_count_check_catches_a_wrong_config(tmp_path, monkeypatch):
    write_entry(tmp_path, "models", "wrong", tiny_entry_data(
        name="wrong", config={**registry.load_model("tiny").config, "num_hidden_layers": 3}))
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    with pytest.raises(SerbenchError, match=r"wrong\.yaml: field 'params' expects 25,136"):
        backbones.build(registry.load_model("wrong"), "random")
    # a local folder whose saved config is another architecture is caught the same way
    folder = save_tiny(tmp_path / "deeper", num_hidden_layers=4)
    with pytest.raises(SerbenchError, match="'params'"):
        backbones.build(registry.load_model("tiny"), str(folder))


def test_unknown_model_class_or_config_field(tmp_path, monkeypatch):
    write_entry(tmp_path, "models", "noclass", tiny_entry_data(name="noclass", model_class="NotAModel"))
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    with pytest.raises(SerbenchError, match=r"noclass\.yaml: field 'model_class'"):
        backbones.build(registry.load_model("noclass"), "random")


def test_torch_encoder_shapes_and_input_checks(tiny):
    model, _ = backbones.build(tiny, "random:0")
    enc = backbones.encoder(tiny, model)
    wave = clips(1, seconds=1.3)[0]
    out = enc.embed(wave)
    assert out.shape == (tiny.config["num_hidden_layers"] + 1, tiny.config["hidden_size"])
    assert out.dtype == np.float32 and np.isfinite(out).all()
    with pytest.raises(SerbenchError, match="0.5 s"):
        enc.embed(wave[:4000])
    with pytest.raises(SerbenchError, match="1-D"):
        enc.embed(np.stack([wave, wave]))


def test_egemaps_is_weight_free_88_functionals():
    entry = registry.load_model("egemaps")
    enc, prov = backbones.build(entry)
    assert prov["kind"] == "none" and prov["feature_set"] == "eGeMAPSv02"
    assert "weight-free" in backbones.describe(prov)
    a, b = clips(2, seconds=1.5)
    fa, fb = enc.embed(a), enc.embed(b)
    assert fa.shape == (1, 88) and np.isfinite(fa).all() and not np.allclose(fa, fb)
    with pytest.raises(SerbenchError, match="weight-free"):
        backbones.build(entry, "random:1")
