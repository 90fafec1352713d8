"""Whisper encoders as a model kind: its own log-mel in, 30 s of positions cut to the clip or padded,
every artefact and an exported folder fed from the 16 kHz waveform. A tiny random WhisperConfig;
the trained checkpoint is for benchmarks only."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from _models import WHISPER_CONFIG, clips, save_tiny_whisper, whisper_entry_data, write_entry
from _standalone import standalone_infer
from serbench import backbones, registry, runtime
from serbench.artefacts import cache
from serbench.artefacts.encoders import open_encoder
from serbench.errors import SerbenchError
from serbench.runtime import features

SR = runtime.SAMPLE_RATE


@pytest.fixture()
def reg(tmp_path, monkeypatch):
    """A user registry folder holding the tiny Whisper entry (cut) and its padded twin."""
    root = tmp_path / "registry"
    write_entry(root, "models", "whisper-test", whisper_entry_data())
    write_entry(root, "models", "whisper-pad", whisper_entry_data(name="whisper-pad", positions="pad"))
    monkeypatch.setenv("SERBENCH_REGISTRY", str(root))
    return root


def _cos(a, b):
    return float(np.min((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))))


def _wave(seconds, seed=0):
    return clips(1, seconds=seconds, seed=seed)[0]


@pytest.mark.parametrize("seconds", [0.73, 2.3])
def test_log_mel_is_whisper_feature_extractors_both_ways(seconds):
    fe = WhisperFeatureExtractor(feature_size=80)
    np.testing.assert_allclose(features.mel_filters(80), fe.mel_filters, atol=1e-7)
    w = _wave(seconds)
    cut = features.graph_inputs(w, features.whisper_spec(positions="cut"))
    ref = fe(w, sampling_rate=SR, padding="longest", return_tensors="np").input_features
    assert list(cut) == ["input_features"] and cut["input_features"].shape == ref.shape
    np.testing.assert_allclose(cut["input_features"], ref, atol=1e-5)
    pad = features.graph_inputs(w, features.whisper_spec(positions="pad"))
    ref30 = fe(w, sampling_rate=SR, return_tensors="np").input_features   # padded to 30 s, as Whisper trains
    assert pad["input_features"].shape == ref30.shape == (1, 80, 3000)
    np.testing.assert_allclose(pad["input_features"], ref30, atol=1e-5)
    assert int(pad["audio_frames"]) == -(-(w.size // 160) // 2) == ref.shape[-1] // 2 + ref.shape[-1] % 2


def test_log_mel_of_a_128_bin_encoder_is_the_extractors():
    """large-v3 and its kin have 128 mel bins: the filterbank follows the entry's num_mel_bins."""
    fe = WhisperFeatureExtractor(feature_size=128)
    w = _wave(1.3)
    got = features.graph_inputs(w, features.whisper_spec(n_mels=128))["input_features"]
    np.testing.assert_allclose(got, fe(w, sampling_rate=SR, padding="longest", return_tensors="np").input_features,
                               atol=1e-5)


def test_a_whisper_entry_whose_class_is_not_whisper_is_refused_by_name(reg):
    bad = write_entry(reg, "models", "whisper-hubert", {**whisper_entry_data(name="whisper-hubert"),
                                                         "model_class": "HubertModel", "config": {}})
    with pytest.raises(SerbenchError, match="model_class.*HubertModel.*no Whisper encoder"):
        backbones.build(registry.load_model(str(bad)), "random:0")


def test_more_than_30_s_is_refused_by_name():
    with pytest.raises(runtime.InferError, match="covers 30 s"):
        features.graph_inputs(np.zeros(30 * SR + 1, np.float32), features.whisper_spec())


def test_network_is_transformers_encoder_at_30_s_and_keeps_only_audio_frames_when_padded(reg):
    entry = registry.load_model("whisper-test")
    enc, prov = backbones.build(entry, "random:0")
    assert type(enc).__name__ == "WhisperEncoder" and prov["kind"] == "random"
    w = _wave(1.9)
    spec = features.whisper_spec(positions="pad")
    feeds = features.graph_inputs(w, spec)
    x = torch.from_numpy(feeds["input_features"])
    with torch.no_grad():
        want = torch.stack(enc(x, output_hidden_states=True).hidden_states, dim=1)
        full = backbones.whisper_stacked(enc)(x)
        kept = backbones.whisper_stacked(enc)(x, torch.from_numpy(feeds["audio_frames"]))
    assert want.shape == (1, WHISPER_CONFIG["encoder_layers"] + 1, 1500, WHISPER_CONFIG["d_model"])
    torch.testing.assert_close(full, want, atol=1e-5, rtol=1e-5)
    n = int(feeds["audio_frames"])
    assert kept.shape[2] == n < 1500
    torch.testing.assert_close(kept, want[:, :, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["whisper-test", "whisper-pad"])
def test_fp32_export_reproduces_the_torch_encoder_at_other_lengths(reg, name):
    entry = registry.load_model(name)
    built = backbones.build(entry, "random:0")
    art = cache.build(entry, registry.load_recipe("fp32"), built)
    assert art.frontend == backbones.frontend(entry) and art.frontend["positions"] == entry.positions
    ref, ort_enc = backbones.encoder(entry, built[0]), open_encoder(art)
    for seconds in (0.6, 3.1):          # the export's dummy was 1 s
        w = _wave(seconds, seed=3)
        a, b = ref.embed(w), ort_enc.embed(w)
        assert a.shape == (WHISPER_CONFIG["encoder_layers"] + 1, WHISPER_CONFIG["d_model"])
        np.testing.assert_allclose(b, a, atol=1e-4)


def test_cut_and_padded_positions_are_different_models(reg):
    """The choice is real (and so recorded): the same clip pooled both ways differs."""
    cut, pad = registry.load_model("whisper-test"), registry.load_model("whisper-pad")
    enc, _ = backbones.build(cut, "random:0")
    w = _wave(2.0)
    a, b = backbones.encoder(cut, enc).embed(w), backbones.encoder(pad, enc).embed(w)
    assert np.abs(a - b).max() > 1e-3


def test_quantised_recipes_build_for_whisper_and_the_wav2vec2_specific_ones_refuse_by_name(reg):
    entry = registry.load_model("whisper-test")
    built = backbones.build(entry, "random:0")
    calib = clips(4, seconds=1.5, seed=5)
    ref = backbones.encoder(entry, built[0])
    w = _wave(2.4, seed=9)
    want = ref.embed(w)
    for name in ("fp16", "dynamic-int8", "static-int8", "inc-int8"):
        recipe = registry.load_recipe(name)
        art = cache.build(entry, recipe, built, calibration=calib if recipe.calibration else None)
        assert art.frontend["name"] == "whisper-log-mel"
        enc = open_encoder(art)
        assert _cos(enc.embed(w), want) > 0.98, name
        if name == "inc-int8":   # captured with a dynamic frame axis: each clip at its own length
            assert art.provenance["dynamic_frames"] is True and art.provenance["clip_samples"] is None
            for seconds in (0.7, 5.3):
                v = _wave(seconds, seed=2)
                assert _cos(enc.embed(v), ref.embed(v)) > 0.98, seconds
    with pytest.raises(SerbenchError, match="feature_projection.*matches no .*whisper-test"):
        cache.build(entry, registry.load_recipe("int4-matmul"), built, calibration=calib)
    pad = registry.load_model("whisper-pad")
    with pytest.raises(SerbenchError, match="positions are 'pad'"):
        cache.build(pad, registry.load_recipe("inc-int8"), backbones.build(pad, "random:0"), calibration=calib)


def test_a_save_pretrained_checkpoint_loads_as_local_weights_and_params_are_checked(reg, tmp_path):
    folder = save_tiny_whisper(tmp_path / "ckpt", seed=4)
    entry = registry.load_model("whisper-test")
    enc, prov = backbones.build(entry, str(folder))
    assert prov["kind"] == "local" and len(prov["sha256"]) == 64
    torch.manual_seed(4)
    from transformers import WhisperForConditionalGeneration

    same = WhisperForConditionalGeneration(WhisperConfig(**WHISPER_CONFIG)).model.encoder.eval()
    w = _wave(1.2)
    np.testing.assert_allclose(backbones.encoder(entry, enc).embed(w), backbones.encoder(entry, same).embed(w),
                               atol=1e-6)
    wrong = write_entry(reg, "models", "whisper-wrong", whisper_entry_data(name="whisper-wrong", params=123))
    with pytest.raises(SerbenchError, match="expects 123 parameters"):
        backbones.build(registry.load_model(str(wrong)), str(folder))


def test_finetune_keeps_the_convs_frozen_and_trains_the_layers(reg):
    from serbench.finetune import FinetuneConfig, finetune

    entry = registry.load_model("whisper-test")
    enc, _ = backbones.build(entry, "random:0")
    convs = {k: v.clone() for k, v in enc.conv1.state_dict().items()} | \
            {"2" + k: v.clone() for k, v in enc.conv2.state_dict().items()}
    layers = {k: v.clone() for k, v in enc.layers.state_dict().items()}
    waves = clips(6, seconds=1.0, seed=1)
    labels = ["a", "b"] * 3
    res = finetune(enc, waves[:4], labels[:4], waves[4:], labels[4:], ["a", "b"],
                   FinetuneConfig(epochs=2, batch_size=2, lr=1e-3, augment=False, seed=0), entry=entry)
    after = {k: v for k, v in res.backbone.conv1.state_dict().items()} | \
            {"2" + k: v for k, v in res.backbone.conv2.state_dict().items()}
    assert all(torch.equal(convs[k], after[k]) for k in convs)
    assert any(not torch.equal(layers[k], v) for k, v in res.backbone.layers.state_dict().items())
    assert len(res.history) == 2


def test_run_export_and_standalone_infer_without_torch(reg, tmp_path, capsys):
    """A production run of the tiny Whisper, exported: the folder's infer.py computes the log-mel
    itself (torch, transformers and serbench unimportable) and agrees with serbench infer."""
    import soundfile as sf

    from serbench import deploy
    from serbench.cli import main
    from serbench.runner import Runner, RunSpec
    from serbench.synth import voice

    spec = RunSpec(model="whisper-test", protocol="production", recipes=("fp32", "dynamic-int8"), weights="random:0",
                   synthetic=True, synthetic_size="tiny", measure=False)
    results = {r.recipe: r for r in Runner(spec, progress=False, log=lambda *a: None).run()}
    out = tmp_path / "model"
    card = deploy.export(results["dynamic-int8"].run_id, out, log=lambda *a: None, measure_latency=False)
    assert card["preprocess"]["frontend"]["name"] == "whisper-log-mel"
    assert card["graph"]["input"].startswith("input_features")
    rng = np.random.default_rng(0)
    spk = voice.random_speaker("s", "F", rng)
    y = np.concatenate([voice.utterance(spk, "angry", 3.0, rng), rng.normal(0, 0.002, SR).astype(np.float32),
                        voice.utterance(spk, "angry", 2.5, rng)])
    sf.write(tmp_path / "note.wav", y, SR)
    proc = standalone_infer(out, [str(tmp_path / "note.wav"), "--json", "--no-vad"])
    assert proc.returncode == 0, proc.stderr
    alone = json.loads(proc.stdout)["results"][0]
    assert alone["status"] == "ok" and alone["windows"] >= 1
    assert main(["infer", str(out), str(tmp_path / "note.wav"), "--json", "--no-vad"]) == 0
    ours = json.loads(capsys.readouterr().out)["results"][0]
    assert ours["windows"] == alone["windows"]
    for c, p in ours["distribution"].items():
        assert abs(p - alone["distribution"][c]) < 1e-4


def test_the_registry_whisper_entries_build_offline_with_their_params():
    """Each shipped Whisper entry's config builds (on the meta device: no memory, no weights) an
    encoder with exactly the parameters its ``params`` says."""
    names = [e.name for e in registry.models() if e.kind == "whisper"]
    assert {"whisper-tiny", "whisper-tiny.en", "whisper-base", "whisper-small"} <= set(names)
    for name in names:
        entry = registry.load_model(name)
        assert entry.positions in ("cut", "pad") and len(entry.revision) == 40
        with torch.device("meta"):
            enc = WhisperModel(WhisperConfig(**entry.config)).encoder
        assert backbones.check_params(entry, enc) == entry.params
        assert dataclasses.asdict(entry)["input"]["preemphasis"] is None


def test_whisper_int4_quantises_every_weight_matmul_and_both_convs(reg):
    """The Whisper 4-bit recipe names Whisper's nodes: every weight MatMul 4-bit but the attention's
    v/out projections (8-bit), both convs int8 weight-only, and the artefact still embeds alike."""
    entry = registry.load_model("whisper-test")
    built = backbones.build(entry, "random:0")
    art = cache.build(entry, registry.load_recipe("whisper-int4"), built, calibration=clips(4, seconds=1.5, seed=5))
    bits = art.provenance["matmul_bits"]
    per_layer = 6   # q, k, v, out projections, fc1, fc2
    assert len(bits) == per_layer * WHISPER_CONFIG["encoder_layers"]
    for name, b in bits.items():
        assert b == (8 if "v_proj" in name or "out_proj" in name else 4), name
    assert sorted(art.provenance["convs_weight_only"]) == ["/conv1/Conv", "/conv2/Conv"]
    fp32 = cache.build(entry, registry.load_recipe("fp32"), built)
    assert art.size_mb < fp32.size_mb
    w = _wave(2.0, seed=6)
    assert _cos(open_encoder(art).embed(w), backbones.encoder(entry, built[0]).embed(w)) > 0.9
