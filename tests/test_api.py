"""The front door: serbench.run / results / bench from Python, home= and store= instead of env vars."""
from __future__ import annotations

import os

import pandas as pd

import serbench
from serbench import paths


def test_run_and_results_return_dataframes_in_the_given_home(tmp_path, monkeypatch):
    monkeypatch.delenv("SERBENCH_HOME")
    home = tmp_path / "h"
    df = serbench.run(model="egemaps", protocol="leave-one-speaker-out", corpus="ravdess", synthetic=True,
                      synthetic_size="tiny", measure=False, home=home)
    assert isinstance(df, pd.DataFrame) and list(df["recipe"]) == ["fp32"]
    row = df.iloc[0]
    assert row["ua_ci_low"] <= row["ua"] <= row["ua_ci_high"] and row["head"] == "logreg"
    assert row["speakers"] == len(row["shared_speakers_train_test"])           # one fold per speaker
    assert (home / "results.sqlite").is_file() and (home / "synthetic").is_dir()  # written where asked
    assert "SERBENCH_HOME" not in os.environ and paths.home() != home               # and nowhere else after
    table = serbench.results(home=home)
    assert list(table["run_id"]) == [row["run_id"]]
    assert table.iloc[0]["ua"] == df.attrs["runs"][0]["ua"]["mean"]               # the fold mean, as stored
    other = serbench.results(store=home / "results.sqlite")
    assert list(other["run_id"]) == list(table["run_id"])


def test_compressed_rows_carry_the_paired_comparison(tmp_path):
    df = serbench.run("tiny", "loso", ["fp32", "dynamic-int8"], weights="random:1", synthetic=True,
                      synthetic_size="tiny", measure=False, home=tmp_path / "h")
    ref, new = df.iloc[0], df.iloc[1]
    assert pd.isna(ref["delta_ua"]) and pd.isna(ref["verdict"])            # fp32 is the reference
    assert abs(new["delta_ua"] - (new["ua"] - ref["ua"])) < 1e-12
    assert new["delta_ua_ci_low"] <= new["delta_ua"] <= new["delta_ua_ci_high"]
    assert "fp32" in new["verdict"] and 0 <= new["agreement"] <= 1
    paired = df.attrs["runs"][1]["paired"]
    assert new["verdict"] == serbench.api.verdict(paired) and new["delta_ua_mdd"] == paired["ua"]["mdd"] >= 0
    wide = max(abs(new["delta_ua_ci_low"]), abs(new["delta_ua_ci_high"])) * 100 + 0.1
    if not new["verdict"].startswith(("worse", "better")):   # else no margin makes it equivalent
        assert serbench.api.verdict(paired, margin=wide).startswith("equivalent")   # the margin reaches it


def test_bench_returns_one_row_per_recipe(tmp_path):
    df = serbench.bench("tiny", ["dynamic-int8"], "random:0", home=tmp_path / "h", repeats=2, warmup=1, probe=2,
                        energy=False, rss=False)
    assert list(df["recipe"]) == ["fp32", "dynamic-int8"]
    assert {"size_mb", "latency_p50_ms", "fidelity_centered_cosine", "speedup_vs_fp32"} <= set(df.columns)
    assert (tmp_path / "h" / "artefacts").is_dir()


def test_compare_export_and_analyse_from_python(tmp_path, monkeypatch):
    import soundfile as sf

    from serbench.synth import voice

    monkeypatch.delenv("SERBENCH_HOME")
    home = tmp_path / "h"
    df = serbench.run("tiny", "production", "fp32", weights="random:0", synthetic=True, synthetic_size="tiny",
                      measure=False, home=home)
    rep = serbench.compare(home=home, out=tmp_path / "report", figures=False)
    assert list(rep.runs["run_id"]) == list(df["run_id"]) and rep.runs.iloc[0]["ua"] == df.attrs["runs"][0]["ua"]["mean"]
    assert (tmp_path / "report" / "runs.csv") in rep.files and (tmp_path / "report" / "index.html").is_file()
    only_tables = serbench.compare(store=home / "results.sqlite", figures=False)
    assert only_tables.files == [] and list(only_tables.runs["run_id"]) == list(rep.runs["run_id"])

    card = serbench.export(int(df["run_id"][0]), tmp_path / "model", home=home, measure_latency=False)
    assert card["run_id"] == int(df["run_id"][0]) and card["verification"]["max_abs_diff"] < 1e-3
    assert "SERBENCH_HOME" not in os.environ

    sr = 16000
    sf.write(tmp_path / "note.wav", voice.probe_clips(1, seed=3, seconds=9.0)[0], sr)
    out = serbench.analyse(tmp_path / "model", [tmp_path / "note.wav", tmp_path / "missing.wav"], vad=False)
    ok, bad = out.iloc[0], out.iloc[1]
    probs = [ok[f"p_{c}"] for c in card["classes"]]
    timeline = out.attrs["doc"]["results"][0]["timeline"]
    assert ok["status"] == "ok" and ok["windows"] == len(timeline) >= 1 and abs(sum(probs) - 1) < 1e-3
    assert ok["confidence"] == max(probs) and ok["emotion"] == card["classes"][probs.index(max(probs))]
    assert bad["status"] == "error" and "no such file" in bad["message"]
