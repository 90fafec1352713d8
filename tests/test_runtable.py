"""Store -> tables (:mod:`serbench.runtable`, :mod:`serbench.views`): run selection, Pareto fronts,
accuracy per MB, and which runs the leakage and cross-corpus views set side by side. The stores
are made by hand (:mod:`_runs`), so every expected number is worked out from the inputs."""
from __future__ import annotations

import pandas as pd
import pytest
from _runs import CLASSES, write_run

from serbench import report, runtable
from serbench.store import Store


def _build(path, ids=None) -> report.Report:
    with runtable.open_store(path) as db:
        return report.build(db, ids, figures=False)


def test_default_selection_is_the_latest_finished_run_per_setup(hand):
    rep = _build(hand.path)
    ids = hand.ids
    assert sorted(rep.runs["run_id"]) == sorted(ids[k] for k in "ABCDEFGH")  # not "old", not "failed"
    a = rep.runs.set_index("run_id").loc[ids["A"]]
    assert a["ua"] == pytest.approx(0.6) and a["acc_per_mb"] == pytest.approx(0.006)
    assert a["energy_j_per_clip"] == 2.0 and a["fidelity_cosine"] == 1.0
    # explicit ids win, and the old run can be asked for
    assert list(_build(hand.path, [ids["old"]]).runs["ua"]) == [pytest.approx(0.3)]


def test_fronts_per_protocol_and_data_kind(hand):
    rep = _build(hand.path)
    t = rep.runs.set_index("run_id")
    ids = hand.ids
    front = lambda k, col: t.loc[ids[k], col]  # noqa: E731
    # loso, real data: A (best UA), B (smaller, slightly worse) on the size front; C is dominated
    # by B (bigger, slower, worse); D is weight-free (0 MB): off the size axis, not on every front
    assert [front(k, "front_size") for k in "ABCD"] == [True, True, False, None]
    assert [front(k, "front_latency") for k in "ABC"] == [True, True, False]
    assert [front(k, "front_3d") for k in "ABC"] == [True, True, False]
    assert front("D", "front_latency") is None and front("D", "front_3d") is None  # no latency measured
    # the synthetic tiny run is in its own group: the real-data runs do not knock it off
    assert front("G", "front_size") is True
    assert t.loc[ids["G"], "pareto_group"] == "loso · iemocap-4class · SYNTHETIC"
    # weight-free: accuracy per MB is not applicable, not infinite
    assert t.loc[ids["D"], "acc_per_mb"] is None or pd.isna(t.loc[ids["D"], "acc_per_mb"])
    assert runtable.acc_per_mb(0.5, 0) is None and runtable.acc_per_mb(0.5, 2) == 0.25


def test_latency_fronts_are_per_machine_and_size_fronts_are_not(tmp_path):
    """A latency measured with AMX kernels cannot be traded against one measured with AVX-512:
    each machine (CPU and widest kernel ISA, from the stored hardware record) has its own latency
    and 3-D fronts, while size, which no machine changes, keeps one front per group."""
    from serbench import provenance

    amx = {"model": "Intel Xeon", "flags": ["avx2", "avx512f", "avx512_vnni", "amx_int8"]}
    epyc = {"model": "AMD EPYC", "flags": ["avx2", "avx512f", "avx512_vnni"]}
    with Store(tmp_path / "s.sqlite") as db:
        # on the Xeon: 50 ms, UA 0.7; on the EPYC: 100 ms, UA 0.6 (smaller, so on the size front)
        xeon = write_run(db, "big", "fp32", "loso", [0.7] * 4,
                         measurements={"size_mb": 90.0, "latency_p50_ms": 50.0, "machine": {"isa": amx}})
        amd = write_run(db, "big", "static-int8", "loso", [0.6] * 4,
                        measurements={"size_mb": 25.0, "latency_p50_ms": 100.0, "machine": {"isa": epyc}})
    t = _build(tmp_path / "s.sqlite").runs.set_index("run_id")
    assert t.loc[xeon, "speed_on"] == provenance.isa_label(amx) == "Intel Xeon, amx_int8"
    assert t.loc[amd, "speed_on"] == "AMD EPYC, avx512_vnni"
    assert t.loc[xeon, "speed_group"] != t.loc[amd, "speed_group"]
    assert t.loc[amd, "front_latency"] is True and t.loc[amd, "front_3d"] is True  # alone on its machine
    assert t.loc[xeon, "front_size"] is True and t.loc[amd, "front_size"] is True
    together = runtable.add_fronts(t.reset_index().assign(speed_on=None)).set_index("run_id")
    assert together.loc[amd, "front_latency"] is False  # what one front over both machines would say


def test_leakage_is_random_minus_speaker_independent_on_the_same_corpus(hand):
    leak = _build(hand.path).leakage
    assert len(leak) == 2  # big/fp32 on real IEMOCAP, tiny/fp32 on synthetic; never across the two
    real = leak[leak["model"] == "big"].iloc[0]
    assert real["random_protocol"] == "kfold-random" and real["speaker_independent_protocol"] == "loso"
    assert real["leakage"] == pytest.approx(0.7 - 0.6)
    assert real["random_audit"] == "8/10, 8/10" and real["speaker_independent_audit"] == "0/2, 0/2"
    assert real["check"] == "ok" and real["marks"] == ""
    synth = leak[leak["model"] == "tiny"].iloc[0]
    assert synth["leakage"] == pytest.approx(0.1)
    assert synth["marks"] == "SYNTHETIC, RANDOM-INIT"


def test_cross_corpus_view_pairs_in_corpus_runs_and_gives_target_recall(hand):
    cross = _build(hand.path).cross
    assert len(cross) == 1
    row = cross.iloc[0]
    assert row["train"] == "iemocap+crema-d" and row["target"] == "ravdess"
    assert row["ua_cross"] == pytest.approx(0.4)
    assert row["in_corpus_protocol"] == "loso" and row["in_corpus"] == "iemocap (source)"
    assert row["gap"] == pytest.approx(0.6 - 0.4)
    assert [row[f"recall_{c}"] for c in CLASSES] == pytest.approx([0.2, 0.4, 0.5, 0.5])


def test_runs_with_different_heads_are_kept_apart(tmp_path):
    path = tmp_path / "heads.sqlite"
    with Store(path) as db:
        ids = {"Rm": write_run(db, "big", "fp32", "ravdess-random", [0.7] * 4, shared=8),  # no head key: mlp
               "Sl": write_run(db, "big", "fp32", "speaker-kfold", [0.5] * 4, head="logreg"),
               "Xm": write_run(db, "big", "fp32", "cross-corpus-ravdess", [0.4] * 4, folds=1, head="mlp"),
               "Rl": write_run(db, "big", "fp32", "ravdess-random", [0.6] * 4, shared=8, head="logreg")}
    rep = _build(path)
    assert sorted(rep.runs["run_id"]) == sorted(ids.values())  # the logreg run does not hide the MLP one
    t = rep.runs.set_index("run_id")
    assert [t.loc[ids[k], "head"] for k in ("Rm", "Sl", "Xm", "Rl")] == ["mlp", "logreg", "mlp", "logreg"]
    assert len(rep.leakage) == 1
    row = rep.leakage.iloc[0]
    assert row["run_ids"] == f"{ids['Rl']} vs {ids['Sl']}" and row["head"] == "logreg"
    assert row["leakage"] == pytest.approx(0.6 - 0.5)
    assert len(_build(path, [ids["Rm"], ids["Sl"]]).leakage) == 0  # MLP random split vs logreg speaker-indep.
    cross = rep.cross  # the MLP cross-corpus run has no MLP in-corpus partner: its row stands alone
    assert len(cross) == 1 and cross.iloc[0]["in_corpus_protocol"] is None

