"""`serbench export`: a stored run -> one verified ONNX graph + everything needed to run it."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf
import soxr

from _standalone import standalone_infer
from serbench import deploy, runtime, store
from serbench.artefacts import cache
from serbench.deploy import graph, select
from serbench.cli import main
from serbench.errors import SerbenchError
from serbench.runner import Runner, RunSpec
from serbench.synth import voice

SR = runtime.SAMPLE_RATE


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def runs(home):
    """One production run of the tiny model, fp32 + static-int8: {recipe: run id}."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SERBENCH_HOME", str(home))
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        spec = RunSpec(model="tiny", protocol="production", recipes=("fp32", "static-int8"),
                       weights="random:0", synthetic=True, synthetic_size="tiny", measure=False)
        results = Runner(spec, progress=False, log=lambda *a: None).run()
    finally:
        mp.undo()
    return {r.recipe: r.run_id for r in results}


@pytest.fixture()
def shared_home(home, monkeypatch):
    monkeypatch.setenv("SERBENCH_HOME", str(home))
    return home


def _clips():
    """Fresh clips (not the ones export verifies on), as the runtime feeds them to the graph."""
    pre = {"sample_rate": SR, "trim_db": 20.0, "preemphasis": 0.97, "peak": 0.95, "seconds": 8.0,
           "min_samples": 8000}
    clips = voice.probe_clips(3, seed=42, seconds=8.0)
    return [runtime.model_input(c[: int(s * SR)], pre) for c, s in zip(clips, (8.0, 2.2, 6.0))]


def _graph_probs(folder, waves):
    sess = ort.InferenceSession(str(folder / runtime.MODEL_FILE), providers=["CPUExecutionProvider"])
    return np.stack([sess.run(["probabilities"], {"input_values": w[None]})[0][0] for w in waves])


def _reference(run_id, recipe_run, waves):
    """The store's fold-0 artefact (as `serbench run` evaluated it) + the saved torch head."""
    with store.Store() as db:
        art = cache.load(db.fold_results(recipe_run)["details"].iloc[0]["artefact"])
        head, _ = select.load_head(select.heads_path(db, run_id, 0))
    return graph.reference_probabilities(art, head, waves), art


def test_exported_graph_equals_artefact_plus_head(shared_home, runs, tmp_path):
    out = tmp_path / "fp32"
    card = deploy.export(runs["fp32"], out, log=lambda *a: None)
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "labels.json", "preprocess.json", "infer.py",
                                               "requirements.txt", "model_card.json", "MODEL_CARD.md", "vad"}
    waves = _clips()
    ref, _ = _reference(runs["fp32"], runs["fp32"], waves)
    got = _graph_probs(out, waves)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert np.allclose(got.sum(axis=1), 1, atol=1e-5)
    m = onnx.load(str(out / "model.onnx"))
    assert [i.name for i in m.graph.input] == ["input_values"] and [o.name for o in m.graph.output] == ["probabilities"]
    # the card says what the model is and where its numbers come from
    with store.Store() as db:
        summary = db.run(runs["fp32"])["summary"]
    assert card["accuracy"]["ua"] == summary["ua"] and card["run_id"] == runs["fp32"]
    assert card["weights_source"]["kind"] == "random" and "RANDOM-INIT" in card["weights"]
    assert card["data"]["synthetic"] is True and card["protocol"]["name"] == "production"
    assert card["verification"]["max_abs_diff"] < 1e-4 and card["latency"]["p50_ms"] > 0
    assert card["size"]["model_onnx_mb"] > 0 and card["vad"]["licence"] == "MIT"
    assert json.loads((out / "labels.json").read_text())["classes"] == ["angry", "happy", "neutral", "sad"]
    md = (out / "MODEL_CARD.md").read_text()
    assert "SYNTHETIC" in md and "RANDOM-INIT" in md and "UA (%)" in md
    assert json.loads((out / "preprocess.json").read_text())["trim_db"] == 20.0


def test_int8_export_stays_int8_and_other_recipe_comes_from_the_sibling_run(shared_home, runs, tmp_path):
    out = tmp_path / "int8"
    card = deploy.export(runs["fp32"], out, recipe="static-int8", log=lambda *a: None, measure_latency=False)
    assert card["run_id"] == runs["static-int8"] and card["recipe"] == "static-int8"
    assert "taken from run" in card["note"] and card["accuracy"]["measured_by_run"] == runs["static-int8"]
    ops = Counter(n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    waves = _clips()
    ref, art = _reference(runs["static-int8"], runs["static-int8"], waves)
    assert art.recipe == "static-int8"
    np.testing.assert_allclose(_graph_probs(out, waves), ref, atol=1e-5)
    assert card["backbone_artefact"]["calibration_clips"] > 0


@pytest.mark.parametrize("recipe", ["dynamic-int8", "fp16"])
def test_uncalibrated_recipe_is_rebuilt_and_says_it_was_not_measured(shared_home, runs, tmp_path, recipe):
    out = tmp_path / recipe
    card = deploy.export(runs["fp32"], out, recipe=recipe, log=lambda *a: None, measure_latency=False)
    assert card["recipe"] == recipe and card["accuracy"]["measured_by_run"] is None
    assert "NOT measured" in card["note"] and "not measured" in (out / "MODEL_CARD.md").read_text()
    waves = _clips()
    with store.Store() as db:
        head, _ = select.load_head(select.heads_path(db, runs["fp32"], 0))
    art = cache.load(card["backbone_artefact"]["path"])
    assert art.recipe == recipe
    np.testing.assert_allclose(_graph_probs(out, waves), graph.reference_probabilities(art, head, waves),
                               atol=1e-5)


def test_refusals(shared_home, runs, tmp_path):
    with pytest.raises(SerbenchError, match="calibrated"):
        deploy.export(runs["fp32"], tmp_path / "a", recipe="inc-int8", log=lambda *a: None)
    with pytest.raises(SerbenchError, match="no run 999"):
        deploy.export(999, tmp_path / "b", log=lambda *a: None)
    with pytest.raises(SerbenchError, match="no fold 3"):
        deploy.export(runs["fp32"], tmp_path / "c", fold=3, log=lambda *a: None)
    with pytest.raises(SerbenchError, match="no-such"):
        deploy.export(runs["fp32"], tmp_path / "d", recipe="no-such", log=lambda *a: None)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(SerbenchError, match="not empty"):
        deploy.export(runs["fp32"], tmp_path / "full", log=lambda *a: None)
    assert (tmp_path / "full" / "x").read_text() == "x"
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())   # no temp folder left behind


def test_a_head_that_is_not_the_runs_is_refused(shared_home, runs, tmp_path, monkeypatch):
    import torch

    with store.Store() as db:
        saved = torch.load(select.heads_path(db, runs["fp32"], 0), weights_only=True)
    saved["state_dict"]["layer_logits"] = saved["state_dict"]["layer_logits"] + torch.tensor([1.0, 0.0, 0.0])
    other = tmp_path / "fold0.pt"
    torch.save(saved, other)
    monkeypatch.setattr(select, "heads_path", lambda db, run_id, fold: other)
    with pytest.raises(SerbenchError, match="not the head run"):
        deploy.export(runs["fp32"], tmp_path / "out", log=lambda *a: None)


def test_cli_export_then_standalone_infer_without_torch(shared_home, runs, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["export", "--run", str(runs["static-int8"]), str(out), "--no-latency"]) == 0
    assert "exported tiny static-int8" in capsys.readouterr().out
    rng = np.random.default_rng(0)
    spk = voice.random_speaker("s", "M", rng)
    parts = []
    for _ in range(5):
        parts += [voice.utterance(spk, "sad", 3.0, rng), rng.normal(0, 0.002, SR).astype(np.float32)]
    y = np.concatenate(parts)
    x = soxr.resample(y, SR, 44100)
    sf.write(tmp_path / "note.wav", np.stack([x, x], axis=1), 44100)
    sf.write(tmp_path / "quiet.wav", np.zeros(SR * 3, np.float32), SR)
    # the folder's own infer.py, with torch, librosa, scipy, soxr and serbench unimportable
    proc = standalone_infer(out, [str(tmp_path / "note.wav"), str(tmp_path / "quiet.wav"), "--json"])
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    note, quiet = doc["results"]
    assert note["status"] == "ok" and note["channels"] == 2 and note["resampler"].startswith("numpy")
    assert note["windows"] >= 1 and doc["model_card"]["recipe"] == "static-int8"
    assert quiet["status"] == "no_speech"
    # serbench infer (soxr resampling) agrees with the standalone run (numpy resampling)
    assert main(["infer", str(out), str(tmp_path / "note.wav"), "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)["results"][0]
    assert ours["windows"] == note["windows"]
    # windows are spans of the file, so both resamplers give the same spans (classes may differ by a tie)
    spans = lambda r: [(w["start_s"], w["end_s"]) for w in r["timeline"] if w.get("emotion")]  # noqa: E731
    assert spans(ours) == spans(note) and spans(ours)
    assert main(["infer", str(out), str(tmp_path / "note.wav")]) == 0   # text states weights and training data
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("model: tiny / static-int8 (run ") and "weights RANDOM-INIT" in first
    assert "trained on SYNTHETIC data (iemocap)" in first
    for c, p in ours["distribution"].items():
        assert abs(p - note["distribution"][c]) < 0.05


def test_a_linear_head_exports_into_the_same_graph(shared_home, tmp_path):
    """A head fitted by scikit-learn (logreg) is merged and verified like the MLP probe."""
    spec = RunSpec(model="tiny", protocol="production", recipes=("fp32",), weights="random:0", head="logreg",
                   synthetic=True, synthetic_size="tiny", measure=False)
    (res,) = Runner(spec, progress=False, log=lambda *a: None).run()
    out = tmp_path / "logreg"
    card = deploy.export(res.run_id, out, log=lambda *a: None, measure_latency=False)
    assert card["head"] == "logreg" and "LinearHead" in card["graph"]["head"]
    assert "| head | logreg" in (out / "MODEL_CARD.md").read_text()
    waves = _clips()
    ref, _ = _reference(res.run_id, res.run_id, waves)
    np.testing.assert_allclose(_graph_probs(out, waves), ref, atol=1e-5)


def test_a_weight_free_run_is_refused_and_nothing_is_written(shared_home, tmp_path):
    """eGeMAPS is openSMILE run as built: no artefact, no ONNX graph to ship."""
    spec = RunSpec(model="egemaps", protocol="production", corpus="ravdess", synthetic=True, synthetic_size="tiny",
                   measure=False)
    (res,) = Runner(spec, progress=False, log=lambda *a: None).run()
    with pytest.raises(SerbenchError, match="weight-free opensmile model"):
        deploy.export(res.run_id, tmp_path / "egemaps", log=lambda *a: None, measure_latency=False)
    assert not (tmp_path / "egemaps").exists() or not any((tmp_path / "egemaps").iterdir())


def test_export_refuses_a_missing_store_and_an_unfinished_run(tmp_path, capsys):
    missing = tmp_path / "nonexistent.sqlite"
    assert main(["export", "--run", "1", "--store", str(missing), str(tmp_path / "m")]) == 2
    assert f"serbench export: error: {missing}: no results store there" in capsys.readouterr().err
    assert not missing.exists()  # no empty store file made
    path = tmp_path / "r.sqlite"
    with store.Store(path) as db:
        rid = db.create_run(model="tiny", recipe="fp32", protocol="production", mode="probe",
                            config={"synthetic": True, "weights_source": {"kind": "random", "seed": 0}},
                            provenance={})
        failed = db.create_run(model="tiny", recipe="fp32", protocol="production", mode="probe",
                               config={"synthetic": True, "weights_source": {"kind": "random", "seed": 1}},
                               provenance={})
        db.fail_run(failed, "OSError: disk full")
    assert main(["export", "--run", str(rid), "--store", str(path), str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert f"run {rid} is not finished (status: running)" in err and "--resume" in err
    assert main(["export", "--run", str(failed), "--store", str(path), str(tmp_path / "m")]) == 2
    assert "(status: failed; error: OSError: disk full)" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_full_disk_while_exporting_is_named_and_leaves_nothing(shared_home, runs, tmp_path, monkeypatch, capsys):
    import errno

    out = tmp_path / "model"
    out.mkdir()
    real_save = onnx.save

    def full(model, path, *a, **kw):
        real_save(model, path, *a, **kw)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(onnx, "save", full)
    assert main(["export", "--run", str(runs["fp32"]), str(out), "--no-latency"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"serbench export: error: cannot write model folder {out}: no space left on the device")
    assert "(writing model.onnx)" in err
    assert list(tmp_path.iterdir()) == [out] and not any(out.iterdir())  # no temporary folder, OUT untouched


@pytest.mark.slow
def test_an_exported_folders_infer_py_makes_no_network_attempt(shared_home, runs, tmp_path):
    """A deployed model must not phone anywhere: the folder's own infer.py on a long note, kept
    open past the point where onnxruntime's telemetry makes its lookups (tests/test_network.py has
    the control showing that a bare onnxruntime process does), under a network-denying harness."""
    from _netguard import environment, inet_attempts, unavailable

    why = unavailable()
    if why:
        pytest.skip(f"network-denying harness unavailable: {why}")
    out = tmp_path / "model"
    assert main(["export", "--run", str(runs["static-int8"]), str(out), "--no-latency"]) == 0
    rng = np.random.default_rng(1)
    spk = voice.random_speaker("s", "F", rng)
    sf.write(tmp_path / "note.wav", np.concatenate([voice.utterance(spk, e, 4.0, rng)
                                                    for e in ("angry", "sad", "happy", "neutral") * 3]), SR)
    code = ("import runpy, sys, time\n"
            f"sys.argv = ['infer.py', {str(tmp_path / 'note.wav')!r}, '--json']\n"
            "try:\n"
            f"    runpy.run_path({str(out / 'infer.py')!r}, run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "time.sleep(12)\n")
    got = inet_attempts({"infer.py": (code, environment())})
    assert got["infer.py"] == [], got["infer.py"][:5]
