"""Measurements: fidelity maths, interleaved latency, energy that never crashes and writes no
files, fresh-process memory, and `serbench bench` output that labels random weights."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from serbench import measure
from serbench.cli import main


def test_fidelity_identical_noisy_and_shifted():
    rng = np.random.default_rng(0)
    ref = rng.normal(5.0, 1.0, size=(6, 3, 16))  # a big common offset, as SSL embeddings have
    same = measure.fidelity(ref, ref.copy())
    assert same["centered_cosine"] == pytest.approx(1.0) and same["rel_l2"] == pytest.approx(0.0)
    noisy = measure.fidelity(ref, ref + rng.normal(0, 0.5, ref.shape))
    assert 0.5 < noisy["centered_cosine"] < 0.99 and noisy["rel_l2"] > 0
    assert noisy["centered_cosine_worst_layer"] <= noisy["centered_cosine"]
    # plain cosine would call this near-perfect; the centred one does not
    plain = np.mean([np.dot(a.ravel(), b.ravel()) / np.linalg.norm(a) / np.linalg.norm(b)
                     for a, b in zip(ref, ref + rng.normal(0, 0.5, ref.shape))])
    assert plain > 0.99 > noisy["centered_cosine"]
    shifted = measure.fidelity(ref, ref + 0.8)  # a constant bias in the candidate counts as error
    assert shifted["centered_cosine"] < 0.99
    with pytest.raises(ValueError):
        measure.fidelity(ref, ref[:, :2])
    with pytest.raises(ValueError):
        measure.fidelity(ref[:1], ref[:1])


def test_latency_is_interleaved_and_counts_runs():
    calls = []
    res = measure.latency({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, runs=5, warmup=2)
    assert calls.count("a") == calls.count("b") == 7
    assert calls[4:] == ["a", "b"] * 5  # after warm-up: a, b, a, b ...
    for r in res.values():
        assert r["runs"] == 5 and r["warmup"] == 2 and 0 <= r["p50_ms"] <= r["p90_ms"]
    assert measure.throughput({"mean_ms": 500.0}, 8.0) == 16.0


def test_energy_reports_joules_and_writes_nothing_to_cwd(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    res = measure.energy(lambda: sum(range(20000)), country="DEU", min_runs=3, min_seconds=0.5)
    assert res["country"] == "DEU"
    assert res.get("error") is None, res
    assert res["energy_j_per_clip"] > 0 and res["runs"] >= 3 and res["tracking_mode"] == "process"
    assert os.listdir(tmp_path) == []
    assert "codecarbon INFO" not in capfd.readouterr().err


def test_energy_failure_is_recorded_not_raised(monkeypatch):
    import codecarbon

    def broken(*a, **k):
        raise RuntimeError("no power data")

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", broken)
    res = measure.energy(lambda: None, min_runs=1, min_seconds=0)
    assert res["energy_j_per_clip"] is None and "no power data" in res["error"]


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory):
    from serbench import registry
    from serbench.artefacts import cache

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERBENCH_HOME", str(tmp_path_factory.mktemp("measure_home")))
        yield cache.build(registry.load_model("tiny"), registry.load_recipe("fp32"), "random:0")


def test_peak_rss_in_a_fresh_process(tiny_fp32):
    res = measure.peak_rss(tiny_fp32.path, threads=1, seconds=1.0)
    assert res.get("error") is None, res
    assert res["peak_rss_mb"] >= res["rss_before_open_mb"] > 0
    assert measure.peak_rss(tiny_fp32.path / "missing")["peak_rss_mb"] is None


def test_bench_labels_random_weights_and_flags(capsys):
    argv = ["bench", "--model", "tiny", "--recipe", "dynamic-int8", "--weights", "random:4", "--repeats", "2",
            "--warmup", "1", "--probe", "2", "--no-energy", "--no-rss", "--threads", "1"]
    assert main(argv + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["random_weights"] is True and "RANDOM-INIT" in res["weights_label"]
    assert res["weights"] == {"kind": "random", "seed": 4, "label": "RANDOM-INIT weights (not pretrained)"}
    rows = {r["recipe"]: r for r in res["rows"]}
    assert list(rows) == ["fp32", "dynamic-int8"] and res["threads"] == 1
    assert rows["fp32"]["speedup_vs_fp32"] == 1.0 and rows["fp32"]["fidelity"]["centered_cosine"] > 0.9999
    assert rows["dynamic-int8"]["latency"]["runs"] == 2 and isinstance(rows["dynamic-int8"]["flags"], list)
    assert res["probe"]["kind"] == "synthetic" and res["probe_ids"] == measure.clips(2, measure.PROBE_SEED)[1]
    assert res["calibration_offered"] == 0 and res["notes"] == []   # nothing calibrated, nothing skipped
    assert main(argv + ["--min-fidelity", "1"]) == 0   # at most 1 (refused above): dynamic-int8 is below
    out = capsys.readouterr().out
    assert "RANDOM-INIT" in out and "LOW-FIDELITY" in out and "probe: synthetic, 2 clips (seed 0)" in out


def test_for_run_measures_an_artefact_flat(tiny_fp32, monkeypatch):
    from serbench import registry

    monkeypatch.setattr(measure, "energy", lambda fn, country="USA": {"energy_j_per_clip": 0.5, "country": country})
    monkeypatch.setattr(measure, "peak_rss", lambda path, threads=None: {"peak_rss_mb": 1.0})
    out = measure.for_run(registry.load_model("tiny"), registry.load_recipe("fp32"), tiny_fp32, runs=2)
    assert out["size_mb"] == tiny_fp32.size_mb and out["latency_p50_ms"] > 0 and out["threads"] >= 1
    assert out["energy_j_per_clip"] == 0.5 and out["memory_peak_rss_mb"] == 1.0
    assert out["centered_cosine"] == 1.0
    json.dumps(out)  # plain data for the store


def test_for_run_compares_with_the_cached_fp32_artefact(tiny_fp32, monkeypatch):
    from serbench import registry
    from serbench.artefacts import cache

    monkeypatch.setenv("SERBENCH_HOME", str(tiny_fp32.path.parent.parent))
    monkeypatch.setattr(measure, "energy", lambda fn, country="USA": {"energy_j_per_clip": None, "error": "off"})
    monkeypatch.setattr(measure, "peak_rss", lambda path, threads=None: {"peak_rss_mb": None})
    entry, recipe = registry.load_model("tiny"), registry.load_recipe("dynamic-int8")
    art = cache.build(entry, recipe, "random:0")
    out = measure.for_run(entry, recipe, art, runs=2, probe=2, min_fidelity=1.01)
    assert out["fidelity_reference"] == str(tiny_fp32.path) and out["speedup_vs_fp32"] > 0
    assert out["fidelity_probe"].startswith("2 SYNTHETIC probe clips")   # what it was measured on
    assert "LOW-FIDELITY" in out["flags"] and 0 < out["centered_cosine"] < 1.01
    other = cache.build(entry, recipe, "random:3")  # no fp32 of these weights cached
    assert measure.for_run(entry, recipe, other, runs=1, probe=2)["centered_cosine"] is None


def test_flags_are_decided_in_one_place():
    assert measure.flags(106.0, 100.0, 0.99) == ["SLOWER-THAN-FP32"]
    assert measure.flags(105.0, 100.0, 0.99) == []                      # within the 5 % tolerance
    assert measure.flags(90.0, 100.0, 0.90) == ["LOW-FIDELITY"]
    assert measure.flags(90.0, None, None) == []                        # nothing to compare with


def test_bench_compares_with_the_reference_by_method_and_names_it(tmp_path, monkeypatch):
    """A reference recipe under another name is the reference: ratios and fidelity are to its ONNX
    artefact, and the result says which recipe that was."""
    from _models import write_entry

    from serbench.recipe_bench import bench

    write_entry(tmp_path, "recipes", "plain", {"name": "plain", "backend": "onnxruntime", "method": "fp32"})
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    monkeypatch.setenv("SERBENCH_HOME", str(tmp_path / "home"))
    res = bench("tiny", ["dynamic-int8", "plain"], "random:4", repeats=1, warmup=0, threads=1, probe=2,
                energy=False, rss=False)
    assert res["reference"] == "plain" and "plain ONNX artefact" in res["fidelity_reference"]
    rows = {r["recipe"]: r for r in res["rows"]}
    assert list(rows) == ["plain", "dynamic-int8"]
    assert rows["plain"]["fidelity"]["centered_cosine"] == pytest.approx(1.0)
    assert rows["plain"]["speedup_vs_fp32"] == 1.0 and rows["plain"]["size_ratio_vs_fp32"] == 1.0


def test_for_run_of_a_weight_free_model_measures_its_encoder_as_built(monkeypatch, tmp_path):
    from serbench import registry

    monkeypatch.setenv("SERBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(measure, "energy", lambda fn, country="USA": {"energy_j_per_clip": None})
    monkeypatch.setattr(measure, "peak_rss", lambda path, threads=None: {"peak_rss_mb": None})
    out = measure.for_run(registry.load_model("egemaps"), registry.load_recipe("fp32"), None, runs=1)
    assert out["size_mb"] == 0.0 and out["centered_cosine"] == 1.0 and out["reference"] == "fp32"
    assert out["fidelity_reference"] == "itself (fp32)" and out["latency_p50_ms"] > 0


def test_peak_rss_of_a_weight_free_model_opens_its_entry():
    from serbench import registry

    res = measure.peak_rss(registry.load_model("egemaps").path, threads=1, seconds=1.0)
    assert res.get("error") is None, res
    assert res["peak_rss_mb"] >= res["rss_before_open_mb"] > 0
