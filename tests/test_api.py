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
    assert new["verdict"].endswith("fp32") and 0 <= new["agreement"] <= 1


def test_bench_returns_one_row_per_recipe(tmp_path):
    df = serbench.bench("tiny", ["dynamic-int8"], "random:0", home=tmp_path / "h", runs=2, warmup=1, probe=2,
                        energy=False, rss=False)
    assert list(df["recipe"]) == ["fp32", "dynamic-int8"]
    assert {"size_mb", "latency_p50_ms", "fidelity_centered_cosine", "speedup_vs_fp32"} <= set(df.columns)
    assert (tmp_path / "h" / "artefacts").is_dir()
