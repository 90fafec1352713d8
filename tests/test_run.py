"""`serbench run` end to end on the synthetic corpora: audits, leakage, cache reuse, resume."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from serbench import runner, store
from serbench.cli import main
from serbench.errors import SerbenchError
from serbench.runner import Runner, RunSpec


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One SERBENCH_HOME for the module, so synthetic corpora and caches are shared by its tests."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture()
def shared_home(home, monkeypatch):
    monkeypatch.setenv("SERBENCH_HOME", str(home))
    return home


def _cached(home) -> int:
    return sum(1 for _ in (home / "cache" / "embeddings").rglob("*.npy"))


def test_leakage_shows_and_second_protocol_reuses_the_cache(shared_home, capsys):
    # eGeMAPS on the demo-size synthetic IEMOCAP: fast, weight-free, and strong enough to show effects.
    # The MLP head (not egemaps' default logreg): it overfits speakers, so leakage shows clearly; a
    # linear head narrows the gap to ~3 points here, as it does on real RAVDESS.
    assert main(["run", "--model", "egemaps", "--protocol", "loso", "--synthetic", "--no-measure",
                 "--head", "mlp", "--json"]) == 0
    loso = json.loads(capsys.readouterr().out)["runs"][0]
    after_loso = _cached(shared_home)
    assert after_loso == 320                                   # every utterance embedded once
    assert main(["run", "--model", "egemaps", "--protocol", "kfold-random", "--synthetic",
                 "--no-measure", "--head", "mlp", "--json"]) == 0
    kfold = json.loads(capsys.readouterr().out)["runs"][0]
    assert _cached(shared_home) == after_loso                  # nothing re-embedded
    assert loso["shared_speakers_train_test"] == [0] * 5
    assert all(n > 0 for n in kfold["shared_speakers_train_test"])
    assert loso["ua"]["mean"] > 0.40                           # chance is 0.25
    assert kfold["ua"]["mean"] > loso["ua"]["mean"] + 0.05     # random splits leak speakers
    assert loso["synthetic"] is True and kfold["weights"].startswith("weight-free")
    with store.Store() as db:
        runs = db.runs()
        assert list(runs["protocol"]) == ["loso", "kfold-random"]
        assert set(runs["status"]) == {"finished"}
        prov = runs["provenance"].iloc[0]
        assert {"git_commit", "packages", "cpu", "threads"} <= set(prov)
        cfg = runs["config"].iloc[0]
        assert cfg["synthetic"] is True and cfg["data"]["iemocap"]["manifest_hash"]
        assert len(db.predictions(int(runs["id"].iloc[0]))) == 320



def test_a_measured_run_says_which_machine_made_its_latency(shared_home, capsys):
    """Every speed number names its CPU and kernel ISA: the run's text output and its record."""
    from serbench import provenance

    assert main(["run", "--model", "egemaps", "--protocol", "loso", "--synthetic", "--head", "logreg"]) == 0
    out = capsys.readouterr().out
    assert f"measured on {provenance.isa_summary()}" in out
    with store.Store() as db:
        rid = int(db.runs()["id"].iloc[-1])
        stored = dict(zip(db.measurements(rid)["key"], db.measurements(rid)["value"]))
    assert stored["machine"]["isa"] == provenance.cpu_isa() and stored["latency_p50_ms"] > 0

def test_resume_after_a_crash_gives_the_uninterrupted_numbers(shared_home, tmp_path, monkeypatch):
    spec = RunSpec(model="tiny", protocol="loso", recipes=("fp32", "dynamic-int8"), weights="random:1",
                   synthetic=True, synthetic_size="tiny", measure=False)
    clean = Runner(spec, store_path=tmp_path / "clean.sqlite", progress=False, log=lambda *a: None).run()

    real_fold = Runner.fold_records
    calls = []

    def crashing(self, fold, pending):
        calls.append(fold.index)
        if fold.index == 2:
            raise KeyboardInterrupt("killed")
        return real_fold(self, fold, pending)

    monkeypatch.setattr(Runner, "fold_records", crashing)
    with pytest.raises(KeyboardInterrupt):
        Runner(spec, store_path=tmp_path / "crash.sqlite", progress=False, log=lambda *a: None).run()
    with store.Store(tmp_path / "crash.sqlite") as db:
        assert set(db.runs()["status"]) == {"running"}     # Ctrl-C: interrupted, not failed (issue 23)
        assert all(db.finished_folds(int(i)) == [0, 1] for i in db.runs()["id"])
    monkeypatch.setattr(Runner, "fold_records", real_fold)
    calls.clear()
    resumed = Runner(spec, store_path=tmp_path / "crash.sqlite", resume=True, progress=False,
                     log=lambda *a: None).run()
    assert [r.run_id for r in resumed] == [1, 2]                 # the same runs, continued
    with store.Store(tmp_path / "crash.sqlite") as a, store.Store(tmp_path / "clean.sqlite") as b:
        for rid in (1, 2):
            pa, pb = a.predictions(rid), b.predictions(rid)
            assert len(pa) == len(pb) == 80                      # nothing lost or duplicated
            assert list(pa["y_pred"]) == list(pb["y_pred"])
            np.testing.assert_allclose(np.array(list(pa["probs"])), np.array(list(pb["probs"])), atol=1e-6)
    assert [r.summary["ua"] for r in resumed] == [r.summary["ua"] for r in clean]


def test_finetune_mode_runs_and_keeps_heads(shared_home, tmp_path):
    spec = RunSpec(model="tiny", protocol="loso", recipes=("fp32",), mode="finetune", weights="random:0",
                   synthetic=True, synthetic_size="tiny", measure=False)
    spec.finetune = runner.FinetuneConfig(epochs=1, batch_size=8, augment=False)
    (res,) = Runner(spec, store_path=tmp_path / "ft.sqlite", progress=False, log=lambda *a: None).run()
    assert res.summary["folds"] == 5
    with store.Store(tmp_path / "ft.sqlite") as db:
        assert sorted(p.name for p in db.run_files(res.run_id).glob("fold*.pt")) == [
            f"fold{k}.pt" for k in range(5)]
        assert db.run_files(res.run_id).parent == tmp_path / "ft.runs"   # beside its own store
        details = db.fold_results(res.run_id)["details"].iloc[0]
        assert details["epochs"] == 1 and db.run(res.run_id)["config"]["mode"] == "finetune"
        art = json.loads((Path(details["artefact"]) / "artefact.json").read_text())
        assert art["provenance"]["weights"]["kind"] == "finetuned"


def test_missing_corpus_names_the_three_ways(shared_home, monkeypatch, capsys):
    monkeypatch.chdir(shared_home)
    assert main(["run", "--model", "tiny", "--protocol", "loso", "--weights", "random"]) == 2
    err = capsys.readouterr().err
    assert "--data iemocap=PATH" in err and "SERBENCH_DATA_IEMOCAP" in err and "serbench.toml" in err


def test_static_recipe_calibrates_on_training_utterances_only(shared_home, tmp_path):
    spec = RunSpec(model="tiny", protocol="loso", recipes=("static-int8",), weights="random:2",
                   synthetic=True, synthetic_size="tiny", measure=False, calibration_clips=8)
    (res,) = Runner(spec, store_path=tmp_path / "s.sqlite", progress=False, log=lambda *a: None).run()
    with store.Store(tmp_path / "s.sqlite") as db:
        folds = db.fold_results(res.run_id)
    for _, row in folds.iterrows():
        ids = row["details"]["calibration_ids"]
        held_out = row["audit"]["held_out"]["test"] + row["audit"]["held_out"]["val"]
        assert len(ids) == 8
        assert not any(i.split("/")[1].startswith(tuple(held_out)) for i in ids)


def test_unknown_mode_is_an_error():
    with pytest.raises(SerbenchError, match="--mode"):
        Runner(RunSpec(model="tiny", protocol="loso", mode="distill"))


def test_head_label_map_and_seed_are_chosen_recorded_and_shown(shared_home, tmp_path, capsys):
    store_path = tmp_path / "h.sqlite"
    assert main(["run", "--model", "egemaps", "--protocol", "leave-one-speaker-out", "--corpus", "ravdess",
                 "--synthetic", "--synthetic-size", "tiny", "--no-measure", "--head", "svm-linear",
                 "--label-map", "ravdess=ravdess-8class", "--store", str(store_path)]) == 0
    out = capsys.readouterr().out
    assert "head svm-linear" in out and "ravdess: ravdess-8class" in out and "seed 0" in out
    assert "serbench compare --runs" in out
    with store.Store(store_path) as db:
        run = db.runs().iloc[-1]
        cfg = run["config"]
        folds = db.fold_results(int(run["id"]))
    assert cfg["head"]["name"] == "svm-linear" and cfg["head"]["kind"] == "svm-linear"
    assert cfg["data"]["ravdess"]["label_map"] == "ravdess-8class"
    assert cfg["protocol"]["label_maps"] == {"ravdess": "ravdess-8class"}
    assert len(cfg["classes"]) == 8
    assert "selected" in folds["details"].iloc[0]                  # the C chosen on validation
    # egemaps is fed the decoded audio: its entry's input switches the paper's steps off
    assert cfg["preprocess"] == {"sample_rate": 16000, "trim_db": None, "preemphasis": None,
                                 "peak": None, "seconds": None}


def test_label_map_for_a_corpus_the_protocol_lacks_is_an_error():
    with pytest.raises(SerbenchError, match="no corpus 'iemocap'"):
        Runner(RunSpec(model="egemaps", protocol="speaker-kfold", label_maps={"iemocap": "iemocap-4class"}))
    with pytest.raises(SerbenchError, match="unknown label map"):
        Runner(RunSpec(model="egemaps", protocol="speaker-kfold", label_maps={"ravdess": "nope"}))
    assert main(["run", "--model", "egemaps", "--protocol", "loso", "--label-map", "iemocap"]) == 2


def test_the_protocol_files_seed_is_used_unless_seed_is_given(shared_home, tmp_path):
    from serbench import protocols

    text = protocols.load("kfold-random").text.replace("seed: 0", "seed: 3")
    path = tmp_path / "kfold-random3.yaml"
    path.write_text(text.replace("name: kfold-random", "name: kfold-random3"))
    quiet = dict(progress=False, log=lambda *a: None)
    spec = RunSpec(model="egemaps", protocol=str(path), corpus="ravdess", synthetic=True, synthetic_size="tiny")
    own = Runner(spec, **quiet)
    own._prepare()
    given = Runner(RunSpec(**{**spec.__dict__, "seed": 0}), **quiet)
    given._prepare()
    assert own.seed == 3 and given.seed == 0
    expected = protocols.load(path).with_corpus("ravdess").folds(own.manifests, seed=3)
    assert [f.test for f in own.folds] == [f.test for f in expected]
    assert [f.test for f in own.folds] != [f.test for f in given.folds]


def test_arguments_are_checked_before_any_corpus_is_touched():
    with pytest.raises(SerbenchError, match="no such file or folder"):
        Runner(RunSpec(model="tiny", protocol="loso", weights="/nonexistent/weights"))
    with pytest.raises(SerbenchError, match="weight-free"):
        Runner(RunSpec(model="egemaps", protocol="loso", weights="random"))


def test_a_weight_free_model_takes_only_the_reference_recipe():
    with pytest.raises(SerbenchError, match=r"weight-free.*'static-int8'.*only the reference recipe"):
        Runner(RunSpec(model="egemaps", protocol="loso", recipes=("fp32", "static-int8")))


def test_skipped_files_and_an_empty_resume_are_said_and_kept(synthetic, tmp_path, capsys):
    import shutil

    root = tmp_path / "ravdess"
    shutil.copytree(synthetic["ravdess"], root)
    bad = next(root.glob("Actor_*/*.wav"))
    bad.write_bytes(b"")                                            # an empty file: skipped
    store_path = tmp_path / "s.sqlite"
    args = ["run", "--model", "egemaps", "--protocol", "leave-one-speaker-out", "--corpus", "ravdess",
            "--data", f"ravdess={root}", "--no-measure", "--quiet", "--store", str(store_path)]
    assert main(args + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert "ravdess: 1 file(s) skipped" in err and f"serbench corpus ravdess {root}" in err
    assert "--resume: no unfinished fp32 run" in err
    with store.Store(store_path) as db:
        skipped = db.runs()["config"].iloc[-1]["data"]["ravdess"]["skipped"]
    assert [s["path"] for s in skipped] == [str(bad)] and skipped[0]["reason"]


def test_every_run_carries_speaker_intervals_and_compressed_runs_a_paired_test(shared_home, tmp_path, capsys):
    from serbench import metrics, stats

    store_path = tmp_path / "p.sqlite"
    assert main(["run", "--model", "tiny", "--weights", "random:1", "--protocol", "loso", "--synthetic",
                 "--synthetic-size", "tiny", "--recipe", "fp32,dynamic-int8", "--no-measure", "--json",
                 "--store", str(store_path)]) == 0
    ref, new = json.loads(capsys.readouterr().out)["runs"]
    with store.Store(store_path) as db:
        pa, pb = db.predictions(ref["run_id"]), db.predictions(new["run_id"])
    classes = sorted(set(pa["y_true"]))
    assert ref["ci"]["ua"]["value"] == pytest.approx(metrics.ua(pa["y_true"], pa["y_pred"], classes))
    assert ref["ci"]["ua"]["low"] <= ref["ci"]["ua"]["value"] <= ref["ci"]["ua"]["high"]
    assert ref["ci"]["clusters"] == 10 and ref["paired"] is None          # 10 IEMOCAP speakers
    p = new["paired"]
    assert p["reference_run"] == ref["run_id"] and p["reference_recipe"] == "fp32"
    assert p["ua"]["delta"] == pytest.approx(new["ci"]["ua"]["value"] - ref["ci"]["ua"]["value"])
    assert p["agreement"] == pytest.approx(stats.agreement(pa["y_pred"], pb["y_pred"]))
    assert 0 <= p["mcnemar"]["p_value"] <= 1 and set(p["recall_change"]) == set(classes)
    assert [w["ua"] for w in ref["worst_speakers"]] == sorted(w["ua"] for w in ref["worst_speakers"])


def test_one_invocation_has_one_id_and_predictions_carry_speakers(shared_home, tmp_path):
    spec = RunSpec(model="tiny", protocol="loso", recipes=("fp32", "dynamic-int8"), weights="random:3",
                   synthetic=True, synthetic_size="tiny", measure=False)
    Runner(spec, store_path=tmp_path / "i.sqlite", progress=False, log=lambda *a: None).run()
    Runner(spec, store_path=tmp_path / "i.sqlite", progress=False, log=lambda *a: None).run()
    with store.Store(tmp_path / "i.sqlite") as db:
        runs = db.runs()
        preds = db.predictions(int(runs["id"].iloc[0]))
    assert runs["invocation"].nunique() == 2 and list(runs.groupby("invocation").size()) == [2, 2]
    assert set(preds["speaker"]) == {f"iemocap/Ses0{s}{g}" for s in range(1, 6) for g in "FM"}


def test_production_protocol_says_inconclusive_with_what_it_cannot_resolve(capsys):
    """The production protocol tests on a handful of utterances: whatever static-int8 does there,
    the verdict is not "equivalent", and the run says why with the minimum detectable difference."""
    assert main(["run", "--model", "tiny", "--weights", "random:0", "--protocol", "production", "--synthetic",
                 "--synthetic-size", "tiny", "--recipe", "fp32,static-int8", "--no-measure", "--quiet"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("2 ") and "static-int8" in line)
    assert "equivalent" not in row and "MDD points" in out
    assert re.search(r"run 2 \(static-int8\): \d+ test utterances from \d+ speakers cannot resolve ±1\.0 points "
                     r"\(minimum detectable ΔUA \d+\.\d points, 80 % power; one utterance moves UA by", out)
