"""`serbench compare`: run selection, fronts, leakage and cross-corpus views, files and marks.

The store is built by hand with :class:`serbench.store.Store` (known predictions -> known UA), so
every expected number below is worked out from the inputs, not copied from the output.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from serbench import metrics, report, stats
from serbench.cli import main
from serbench.store import Store

CLASSES = ["angry", "happy", "neutral", "sad"]
CLASSES_8 = ["angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]  # ravdess-8class
PROTOCOLS = {
    "loso": {"corpus": "iemocap", "unit": "session", "kind": "leave-one-out"},
    "kfold-random": {"corpus": "iemocap", "unit": "utterance", "kind": "kfold"},
    "speaker-kfold": {"corpus": "ravdess", "unit": "speaker", "kind": "kfold"},
    "ravdess-random": {"corpus": "ravdess", "unit": "utterance", "kind": "kfold"},
    "cross-corpus-ravdess": {"corpus": None, "unit": "corpus", "kind": "cross-corpus",
                             "train": ["iemocap", "crema-d"], "test": ["ravdess"]},
}
WEIGHTS = {"hub": ({"kind": "hub", "id": "org/big", "revision": "abc"}, "hub org/big@abc"),
           "random": ({"kind": "random", "seed": 0}, "RANDOM-INIT (seed 0), not pretrained"),
           "none": ({"kind": "none", "extractor": "opensmile"}, "weight-free (opensmile)")}


def predictions(recalls, n: int = 10, classes=CLASSES) -> tuple[list[str], list[str]]:
    """Truth and predictions with exactly ``recalls[c] * n`` of class c right (the rest predicted
    as the next class): UA = mean(recalls)."""
    y_true, y_pred = [], []
    for i, (c, r) in enumerate(zip(classes, recalls)):
        right = round(r * n)
        y_true += [c] * n
        y_pred += [c] * right + [classes[(i + 1) % len(classes)]] * (n - right)
    return y_true, y_pred


def write_run(db: Store, model: str, recipe: str, protocol: str, recalls, *, weights: str = "hub",
              synthetic: bool = False, folds: int = 2, shared: int = 0, measurements: dict | None = None,
              status: str = "finished", mode: str = "probe", classes=CLASSES, label_maps: dict | None = None,
              head: str | None = None, speakers: int | None = None, reference: int | None = None,
              n_resamples: int = 200) -> int:
    """One run with ``folds`` identical folds scored from :func:`predictions` (so UA = mean(recalls)
    and the std is 0), an audit with ``shared`` train/test speakers per fold, and measurements.
    ``label_maps``: corpus -> label map name as the runner stores it (a corpus left out: None, its
    default); ``head``: the probe head's name (None: no "head" key, as in runs stored before heads).
    ``speakers``: store each prediction's speaker (utterance ``u{i}`` spoken by :func:`speaker_of`)
    and the speaker statistics a finished ``serbench run`` stores (``ci``, ``per_speaker``),
    computed with serbench.stats from the pooled predictions; ``reference``: also the ``paired``
    comparison to that run (whose predictions are read back from the store). Without them the
    predictions and summary are an older run's."""
    proto = {"name": protocol, "train": [], "test": [], "train_only": [], **PROTOCOLS[protocol]}
    corpora = proto["train"] + proto["test"] or [proto["corpus"]]
    source, described = WEIGHTS[weights]
    config = {"synthetic": synthetic, "weights_source": source, "weights": described, "protocol": proto,
              "classes": list(classes), "data": {c: {"synthetic": synthetic, "label_map": (label_maps or {}).get(c)}
                                                 for c in corpora},
              "nonce": [model, recipe, protocol, status, len(db.runs())]}
    if head is not None:
        config["head"] = {"name": head, "kind": head}
    rid = db.create_run(model=model, recipe=recipe, protocol=protocol, mode=mode, config=config, provenance={})
    y_true, y_pred = predictions(recalls, classes=classes)
    per_fold = []
    for k in range(folds):
        scores = metrics.scores(y_true, y_pred, list(classes))
        audit = {"sizes": {"test": len(y_true)}, "speakers": {"test": 2 + shared},
                 "shared_speakers": {"train-test": {"count": shared, "speakers": [f"s{i}" for i in range(shared)]}}}
        utts = [f"u{i}" for i in range(len(y_true))]
        db.write_fold(rid, k, metrics=scores, audit=audit, utt_ids=utts, y_true=y_true, y_pred=y_pred,
                      **({"speakers": [speaker_of(u, speakers) for u in utts]} if speakers else {}))
        per_fold.append(scores)
    if measurements is not None:
        db.add_measurements(rid, measurements)
    if status == "finished":
        summary = metrics.aggregate(per_fold)
        summary["audit"] = {"shared_speakers_train_test": [shared] * folds}
        if speakers:
            summary.update(speaker_statistics(db, rid, speakers, classes, reference, n_resamples))
        db.finish_run(rid, summary, n_folds=folds)
    elif status == "failed":
        db.fail_run(rid, "boom")
    return rid


def speaker_of(utt_id: str, speakers: int, corpus: str = "iemocap") -> str:
    """The (qualified) speaker of the fixture's utterance ``u{i}``: ``iemocap/S{i % speakers}``."""
    return f"{corpus}/S{int(utt_id.split('/')[-1][1:]) % speakers}"


def speaker_statistics(db: Store, rid: int, speakers: int, classes, reference: int | None,
                       n_resamples: int = 200) -> dict:
    """What ``serbench run`` stores in a summary (its ``_statistics`` and ``_paired``), from the
    run's stored predictions (all folds pooled) with serbench.stats."""
    pred = db.predictions(rid)
    spk = pred["speaker"].tolist()
    y, p = pred["y_true"].tolist(), pred["y_pred"].tolist()
    out = {"ci": stats.cluster_bootstrap(y, p, spk, list(classes), n_resamples, seed=0),
           "per_speaker": stats.per_cluster(y, p, spk, list(classes)).to_dict("records")}
    if reference is not None:
        ref = db.predictions(reference)
        both = ref.merge(pred, on=["fold", "utt_id"], suffixes=("_ref", "_new"), validate="one_to_one")
        y, a, b = both["y_true_ref"].tolist(), both["y_pred_ref"].tolist(), both["y_pred_new"].tolist()
        spk = both["speaker_ref"].tolist()
        ra, rb = (metrics.scores(y, x, list(classes))["recall"] for x in (a, b))
        out["paired"] = {"reference_run": reference, "reference_recipe": "fp32",
                         **stats.paired_bootstrap(y, a, b, spk, list(classes), n_resamples, seed=0),
                         "mcnemar": stats.mcnemar(y, a, b), "agreement": stats.agreement(a, b),
                         "recall_change": {c: rb[c] - ra[c] for c in classes}}
    return out


@pytest.fixture()
def hand(tmp_path) -> SimpleNamespace:
    """A hand-made store: a real-data hub model under three recipes, a weight-free baseline, a
    random-split run, a cross-corpus run, a synthetic random-init run, plus an older and a failed
    run that the default selection must skip. The three recipes of the hub model (A, B, C) carry
    speaker intervals and per-speaker UA (4 speakers), B and C a paired test against A, as one
    ``serbench run --recipe fp32,dynamic-int8,static-int8`` stores them; the others are stored as
    older runs were, without any of these."""
    path = tmp_path / "results.sqlite"

    def m(size, lat=None, **kw):
        return {"size_mb": size, "artefact": "x", **({"latency_p50_ms": lat} if lat else {}), **kw}

    with Store(path) as db:
        ids = {}
        ids["old"] = write_run(db, "big", "fp32", "loso", [0.3] * 4, measurements=m(100, 50))
        ids["A"] = write_run(db, "big", "fp32", "loso", [0.6] * 4, measurements=m(100, 50, energy_j_per_clip=2.0,
                                                                                     fidelity_cosine=1.0), speakers=4)
        ids["B"] = write_run(db, "big", "dynamic-int8", "loso", [0.6, 0.6, 0.5, 0.6], measurements=m(25, 30),
                             speakers=4, reference=ids["A"])
        ids["C"] = write_run(db, "big", "static-int8", "loso", [0.5] * 4, measurements=m(26, 35), speakers=4,
                             reference=ids["A"])
        ids["D"] = write_run(db, "egemaps", "fp32", "loso", [0.4, 0.5, 0.4, 0.5], weights="none", measurements=m(0))
        ids["E"] = write_run(db, "big", "fp32", "kfold-random", [0.7] * 4, shared=8, measurements=m(100))
        ids["F"] = write_run(db, "big", "fp32", "cross-corpus-ravdess", [0.2, 0.4, 0.5, 0.5], folds=1,
                             measurements=m(100))
        ids["G"] = write_run(db, "tiny", "fp32", "loso", [0.3] * 4, weights="random", synthetic=True,
                             measurements=m(0.1))
        ids["H"] = write_run(db, "tiny", "fp32", "kfold-random", [0.4] * 4, weights="random", synthetic=True,
                             shared=8, measurements=m(0.1))
        ids["failed"] = write_run(db, "big", "fp32", "loso", [0.9] * 4, status="failed")
    return SimpleNamespace(path=path, ids=ids)


def _build(path, ids=None, figures=False) -> report.Report:
    with report.open_store(path) as db:
        return report.build(db, ids, figures=figures)


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
    # loso, real data: A (best UA), B (smaller, slightly worse), D (0 MB) on the size front; C is
    # dominated by B (bigger, slower, worse)
    assert [front(k, "front_size") for k in "ABCD"] == [True, True, False, True]
    assert [front(k, "front_latency") for k in "ABC"] == [True, True, False]
    assert [front(k, "front_3d") for k in "ABC"] == [True, True, False]
    assert front("D", "front_latency") is None and front("D", "front_3d") is None  # no latency measured
    # the synthetic tiny run is in its own group: the real-data egemaps (0 MB, better) does not knock it off
    assert front("G", "front_size") is True
    assert t.loc[ids["G"], "pareto_group"] == "loso · iemocap-4class · SYNTHETIC"
    # weight-free: accuracy per MB is not applicable, not infinite
    assert t.loc[ids["D"], "acc_per_mb"] is None or pd.isna(t.loc[ids["D"], "acc_per_mb"])
    assert report.acc_per_mb(0.5, 0) is None and report.acc_per_mb(0.5, 2) == 0.25


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


@pytest.fixture()
def maps(tmp_path) -> SimpleNamespace:
    """RAVDESS under two label maps: a random-split and a speaker-independent run each with the
    4-class and the 8-class map (the 8-class runs made last, so a selection that ignores label maps
    keeps only them), plus a 4-class cross-corpus run targeting RAVDESS. S4 and X store no label-map
    name (None: the corpus default, ravdess-4class) - R4 names it."""
    path = tmp_path / "maps.sqlite"
    four, eight = {"ravdess": "ravdess-4class"}, {"ravdess": "ravdess-8class"}
    with Store(path) as db:
        ids = {"R4": write_run(db, "big", "fp32", "ravdess-random", [0.7] * 4, shared=8, label_maps=four),
               "S4": write_run(db, "big", "fp32", "speaker-kfold", [0.6] * 4),
               "X": write_run(db, "big", "fp32", "cross-corpus-ravdess", [0.4] * 4, folds=1),
               "R8": write_run(db, "big", "fp32", "ravdess-random", [0.5] * 8, shared=8, classes=CLASSES_8,
                               label_maps=eight),
               "S8": write_run(db, "big", "fp32", "speaker-kfold", [0.3] * 8, classes=CLASSES_8, label_maps=eight)}
    return SimpleNamespace(path=path, ids=ids)


def test_leakage_pairs_runs_only_under_the_same_label_map(maps, tmp_path):
    ids = maps.ids
    rep = _build(maps.path)
    # the default selection keeps the latest run per label map: 8-class runs do not hide 4-class ones
    assert sorted(rep.runs["run_id"]) == sorted(ids.values())
    t = rep.runs.set_index("run_id")
    assert [t.loc[ids[k], "label_map"] for k in ("R4", "S4", "X", "R8", "S8")] == [
        "ravdess-4class", "ravdess-4class", "crema-d-4class + iemocap-4class + ravdess-4class",
        "ravdess-8class", "ravdess-8class"]
    assert set(t["head"]) == {"mlp"}  # stored without a head: the MLP probe
    # a 4-class UA is never traded against an 8-class one on a Pareto front
    assert t.loc[ids["S4"], "pareto_group"] != t.loc[ids["S8"], "pareto_group"]
    expected = {f"{ids['R4']} vs {ids['S4']}": ("ravdess-4class", 0.7 - 0.6),
                f"{ids['R8']} vs {ids['S8']}": ("ravdess-8class", 0.5 - 0.3)}
    for leak in (rep.leakage, _build(maps.path, list(ids.values())).leakage):  # default and explicit selection
        assert len(leak) == 2
        got = {r["run_ids"]: (r["label_map"], r["leakage"]) for r in leak.to_dict("records")}
        assert got.keys() == expected.keys()
        for k, (label_map, value) in expected.items():
            assert got[k][0] == label_map and got[k][1] == pytest.approx(value)
        assert set(leak["check"]) == {"ok"} and set(leak["head"]) == {"mlp"}
    # cross-corpus: the 4-class run is set beside the 4-class in-corpus run on its target, not the 8-class one
    cross = rep.cross
    assert len(cross) == 1
    row = cross.iloc[0]
    assert row["in_corpus_protocol"] == "speaker-kfold" and row["in_corpus"] == "ravdess (target)"
    assert row["gap"] == pytest.approx(0.6 - 0.4) and row["head"] == "mlp"
    # the same label-map name with the classes in another order is not comparable
    s4 = t.loc[ids["S4"]].to_dict()
    r4 = t.loc[ids["R4"]].to_dict()
    assert report.comparable(r4, s4, "ravdess")
    assert not report.comparable(r4, {**s4, "classes": s4["classes"][::-1]}, "ravdess")
    assert not report.comparable(r4, s4, "iemocap")  # neither run used IEMOCAP
    # head and label map reach the files
    out = tmp_path / "rep"
    report.write(rep, out)
    runs = pd.read_csv(out / "runs.csv").set_index("run_id")
    assert runs.loc[ids["R8"], "label_map"] == "ravdess-8class" and runs.loc[ids["R8"], "head"] == "mlp"
    leak = pd.read_csv(out / "leakage.csv")
    assert sorted(leak["label_map"]) == ["ravdess-4class", "ravdess-8class"]
    for text in ((out / "report.md").read_text(), (out / "index.html").read_text()):
        assert "ravdess-8class" in text and "label map" in text and "head" in text


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


def test_report_files_are_written_self_contained_and_marked(hand, tmp_path):
    out = tmp_path / "rep"
    assert main(["compare", "--store", str(hand.path), "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    md = (out / "report.md").read_text()
    for name in ("runs.csv", "leakage.csv", "cross_corpus.csv"):
        assert (out / name).stat().st_size > 0
    for stem in ("pareto-size-loso-iemocap-4class-real", "pareto-latency-loso-iemocap-4class-real",
                 "pareto-3d-loso-iemocap-4class-real",
                 "cross-corpus-recall", f"confusion-run{hand.ids['G']}"):
        for ext in ("png", "svg"):
            assert (out / "plots" / f"{stem}.{ext}").stat().st_size > 1000, stem
    # offline: every image is inline, nothing is fetched
    assert html.count('src="data:image/png;base64,') == len(list((out / "plots").glob("*.png")))
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert not list(out.rglob(".*.tmp"))  # atomic writes left no temporaries
    # marks wherever the marked runs' numbers appear
    runs = pd.read_csv(out / "runs.csv", keep_default_na=False).set_index("run_id")
    assert runs.loc[hand.ids["G"], "marks"] == "SYNTHETIC, RANDOM-INIT"
    assert runs.loc[hand.ids["A"], "marks"] == ""
    assert "RANDOM-INIT" in runs.loc[hand.ids["G"], "weights"]
    for text in (html, md):
        assert "SYNTHETIC, RANDOM-INIT" in text  # leakage row of the tiny model
        assert "tiny/fp32 [SYNTHETIC, RANDOM-INIT]" in text  # fronts table
        assert "n/a (weight-free, 0 MB)" in text
    leak = pd.read_csv(out / "leakage.csv", keep_default_na=False)
    assert set(leak["marks"]) == {"", "SYNTHETIC, RANDOM-INIT"}


def test_a_real_data_only_report_has_no_marks(hand, tmp_path):
    ids = hand.ids
    out = tmp_path / "real"
    assert main(["compare", "--store", str(hand.path), "--out", str(out),
                 "--runs", f"{ids['A']},{ids['B']}"]) == 0
    html = (out / "index.html").read_text()
    assert "SYNTHETIC" not in html and "RANDOM-INIT" not in html
    assert "No runs for this view" in html  # no leakage or cross-corpus pair among these two


def test_cli_errors_are_clear(tmp_path, capsys):
    missing = tmp_path / "none.sqlite"
    assert main(["compare", "--store", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert f"{missing}: no results store there" in capsys.readouterr().err
    assert not missing.exists()  # reading did not create an empty store
    empty = tmp_path / "empty.sqlite"
    Store(empty).close()
    assert main(["compare", "--store", str(empty)]) == 2
    assert "no finished runs" in capsys.readouterr().err
    with Store(empty) as db:
        rid = write_run(db, "big", "fp32", "loso", [0.5] * 4, status="running")
    assert main(["compare", "--store", str(empty), "--runs", f"{rid},99"]) == 2
    assert "no run(s) [99]" in capsys.readouterr().err
    assert main(["compare", "--store", str(empty), "--runs", str(rid)]) == 2
    assert "not finished" in capsys.readouterr().err
    assert main(["compare", "--store", str(empty), "--runs", "one,two"]) == 2
    assert "comma-separated run ids" in capsys.readouterr().err


def test_default_out_is_a_timestamped_folder_under_reports(hand, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--store", str(hand.path), "--runs", str(hand.ids["D"])]) == 0
    printed = capsys.readouterr().out
    folders = list((tmp_path / "reports").iterdir())
    assert len(folders) == 1 and re.fullmatch(r"\d{8}-\d{6}", folders[0].name)
    assert str(Path("reports") / folders[0].name / "index.html") in printed


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                    reason="no headless Chromium on this machine (apt-get install chromium); "
                           "the report's rendering is checked by benchmarks/screenshot_report.py where it is")
def test_html_renders_in_headless_chromium(hand, tmp_path):
    out = tmp_path / "rep"
    assert main(["compare", "--store", str(hand.path), "--out", str(out)]) == 0
    png = tmp_path / "shot.png"
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "screenshot_report.py"
    proc = subprocess.run([sys.executable, str(script), str(out / "index.html"), str(png)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["non_blank_fraction"] > 0.05


def test_compare_refuses_a_folder_holding_other_files_unless_forced(hand, tmp_path, capsys):
    mine = tmp_path / "paper"
    mine.mkdir()
    (mine / "report.md").write_text("my own notes\n")
    (mine / "runs.csv").write_text("my,own\n")
    assert main(["compare", "--store", str(hand.path), "--out", str(mine), "--runs", str(hand.ids["A"])]) == 2
    err = capsys.readouterr().err
    assert f"--out {mine} is not empty and holds no serbench report" in err and "--force" in err
    assert (mine / "report.md").read_text() == "my own notes\n" and (mine / "runs.csv").read_text() == "my,own\n"
    # a previous serbench report is rewritten; plots it had that the new report does not draw go
    out = tmp_path / "rep"
    assert main(["compare", "--store", str(hand.path), "--out", str(out)]) == 0
    assert json.loads((out / report.MARKER).read_text())["written_by"] == "serbench compare"
    (out / "notes.txt").write_text("kept")
    assert main(["compare", "--store", str(hand.path), "--out", str(out), "--runs", str(hand.ids["D"])]) == 0
    listed = json.loads((out / report.MARKER).read_text())["files"]
    assert sorted(str(p.relative_to(out)) for p in (out / "plots").iterdir()) == sorted(
        f for f in listed if f.startswith("plots/"))
    assert (out / "notes.txt").read_text() == "kept"
    # --force writes into a folder with other files, leaving those it does not write
    capsys.readouterr()
    assert main(["compare", "--store", str(hand.path), "--out", str(mine), "--runs", str(hand.ids["A"]),
                 "--force"]) == 0
    assert (mine / "report.md").read_text().startswith("# serbench report")
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["compare", "--store", str(hand.path), "--out", str(afile)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_empty_views_keep_their_csv_header_and_params_are_filled(hand, tmp_path):
    out = tmp_path / "rep"
    assert main(["compare", "--store", str(hand.path), "--out", str(out), "--runs", str(hand.ids["A"])]) == 0
    for name in ("leakage.csv", "cross_corpus.csv"):
        lines = (out / name).read_text().splitlines()
        assert len(lines) == 1 and lines[0].startswith("model,recipe,head,mode,"), (name, lines)
    cross = pd.read_csv(out / "cross_corpus.csv")
    assert {"ua_cross", "ua_in_corpus", "gap", "run_id"} <= set(cross.columns)
    # params: a stored measurement, else the model entry's declared count (checked at build to 0.1 %)
    path = tmp_path / "p.sqlite"
    with Store(path) as db:
        rid = write_run(db, "big", "fp32", "loso", [0.5] * 4, measurements={"size_mb": 1.0})
        cfg = db.run(rid)["config"]
        db._conn.execute("UPDATE runs SET config = ? WHERE id = ?",
                         (json.dumps({**cfg, "model_entry": {"name": "big", "params": 94371712}}), rid))
        rid2 = write_run(db, "tiny", "fp32", "loso", [0.5] * 4, measurements={"size_mb": 0.1, "params": 25136})
    with report.open_store(path) as db:
        table = report.run_table(db, db.runs())
    assert table.set_index("run_id")["params"].to_dict() == {rid: 94371712, rid2: 25136}
