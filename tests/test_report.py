"""`serbench compare` (:mod:`serbench.report`): label maps and heads through to the files, the
files themselves (self-contained, marked, atomic, in a folder of their own) and the CLI's errors.

The store is built by hand (:mod:`_runs`: known predictions -> known UA), so every expected number
below is worked out from the inputs, not copied from the output. The tables alone are tested in
test_runtable.py.
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
from _runs import CLASSES_8, write_run

from serbench import report, runtable
from serbench.cli import main
from serbench.store import Store


def _build(path, ids=None, figures=False) -> report.Report:
    with runtable.open_store(path) as db:
        return report.build(db, ids, figures=figures)


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
    assert runtable.comparable(r4, s4, "ravdess")
    assert not runtable.comparable(r4, {**s4, "classes": s4["classes"][::-1]}, "ravdess")
    assert not runtable.comparable(r4, s4, "iemocap")  # neither run used IEMOCAP
    # head and label map reach the files
    out = tmp_path / "rep"
    report.write(rep, out)
    runs = pd.read_csv(out / "runs.csv").set_index("run_id")
    assert runs.loc[ids["R8"], "label_map"] == "ravdess-8class" and runs.loc[ids["R8"], "head"] == "mlp"
    leak = pd.read_csv(out / "leakage.csv")
    assert sorted(leak["label_map"]) == ["ravdess-4class", "ravdess-8class"]
    for text in ((out / "report.md").read_text(), (out / "index.html").read_text()):
        assert "ravdess-8class" in text and "label map" in text and "head" in text



def test_report_files_are_written_self_contained_and_marked(hand, tmp_path):
    out = tmp_path / "rep"
    assert main(["compare", "--store", str(hand.path), "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    md = (out / "report.md").read_text()
    for name in ("runs.csv", "leakage.csv", "cross_corpus.csv"):
        assert (out / name).stat().st_size > 0
    for stem in ("pareto-size-loso-iemocap-4class-real", "pareto-latency-loso-iemocap-4class-real",
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
    with runtable.open_store(path) as db:
        table = runtable.run_table(db, db.runs())
    assert table.set_index("run_id")["params"].to_dict() == {rid: 94371712, rid2: 25136}


def test_compare_json_prints_the_report_tables_and_files(hand, tmp_path, capsys):
    import json

    out = tmp_path / "rep"
    assert main(["compare", "--store", str(hand.path), "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted(r["run_id"] for r in doc["runs"]) == sorted(hand.ids[k] for k in "ABCDEFGH")
    assert {"paired", "speakers", "leakage", "cross", "files"} <= set(doc)
    assert all(Path(f).is_file() for f in doc["files"]) and doc["out"] == str(out)
    assert main(["compare", "--store", str(hand.path), "--out", str(tmp_path / "q"), "--quiet"]) == 0
    assert capsys.readouterr().out == "" and (tmp_path / "q" / "index.html").is_file()
