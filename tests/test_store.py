import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from serbench import store, storefile
from serbench.errors import SerbenchError
from serbench.provenance import provenance
from serbench.store import Store

CLASSES = ["angry", "happy", "neutral", "sad"]
RUN = dict(model="wav2vec2-base", recipe="fp32", protocol="loso", mode="probe",
           config={"synthetic": True, "weights_source": "random-init:seed=0", "seed": 0})


def fold_payload(fold: int, n: int = 20) -> dict:
    rng = np.random.default_rng(fold)
    probs = rng.dirichlet(np.ones(4), size=n)
    return dict(
        metrics={"ua": 0.5 + fold / 100, "wa": 0.5, "macro_f1": 0.4},
        audit={"shared_speakers": {"train-test": {"count": 0, "speakers": []}}},
        utt_ids=[f"iemocap/u{fold}_{i:03d}" for i in range(n)],
        y_true=[CLASSES[i % 4] for i in range(n)],
        y_pred=[CLASSES[int(p.argmax())] for p in probs],
        probs=probs, name=f"Ses0{fold + 1}", details={"best_epoch": np.int64(3)},
    )


def test_default_path_is_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SERBENCH_HOME", str(tmp_path / "h"))
    assert store.default_path() == tmp_path / "h" / "results.sqlite"
    with Store() as s:
        assert s.path.is_file()


def test_round_trip_and_wal(tmp_path):
    path = tmp_path / "r.sqlite"
    with Store(path) as s:
        run = s.create_run(**RUN, provenance=provenance(seed=0))
        for k in range(2):
            s.write_fold(run, k, **fold_payload(k))
        s.add_measurements(run, {"size_mb": 360.2, "latency_ms": {"p50": 12.5}})
        s.add_measurements(run, {"size_mb": 361.0})  # replaced, not duplicated
        s.finish_run(run, summary={"ua": {"mean": 0.505}}, n_folds=2)

        runs = s.runs()
        assert runs.loc[0, "status"] == "finished" and runs.loc[0, "folds_done"] == 2
        assert bool(runs.loc[0, "synthetic"]) and runs.loc[0, "weights_source"] == "random-init:seed=0"
        assert runs.loc[0, "summary"] == {"ua": {"mean": 0.505}}
        folds = s.fold_results(run)
        assert folds["fold"].tolist() == [0, 1] and folds["ua"].tolist() == [0.5, 0.51]
        assert folds.loc[0, "details"] == {"best_epoch": 3} and folds.loc[1, "name"] == "Ses02"
        preds = s.predictions(run, fold=1)
        want = fold_payload(1)
        assert preds["utt_id"].tolist() == want["utt_ids"] and preds["y_pred"].tolist() == want["y_pred"]
        assert np.allclose(np.array(preds["probs"].tolist()), want["probs"], atol=1e-6)
        assert len(s.predictions(run)) == 40
        m = s.measurements(run).set_index("key")["value"].to_dict()
        assert m == {"size_mb": 361.0, "latency_ms": {"p50": 12.5}}
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_config_must_say_synthetic_and_weights_source(tmp_path):
    with Store(tmp_path / "r.sqlite") as s, pytest.raises(ValueError, match="synthetic"):
        s.create_run(**{**RUN, "config": {"seed": 0}}, provenance={})


def test_fold_cannot_be_stored_twice_or_after_finish(tmp_path):
    with Store(tmp_path / "r.sqlite") as s:
        run = s.create_run(**RUN, provenance={})
        s.write_fold(run, 0, **fold_payload(0))
        with pytest.raises(SerbenchError, match="already stored"):
            s.write_fold(run, 0, **fold_payload(0))
        with pytest.raises(SerbenchError, match="folds \\[1\\] are not stored"):
            s.finish_run(run, n_folds=2)
        s.finish_run(run)
        with pytest.raises(SerbenchError, match="finished"):
            s.write_fold(run, 1, **fold_payload(1))
        assert len(s.predictions(run)) == 20


def test_failed_write_leaves_nothing(tmp_path):
    with Store(tmp_path / "r.sqlite") as s:
        run = s.create_run(**RUN, provenance={})
        bad = fold_payload(0)
        bad["utt_ids"][5] = bad["utt_ids"][4]  # duplicate id: fails on the 6th prediction insert
        with pytest.raises(sqlite3.IntegrityError):
            s.write_fold(run, 0, **bad)
        assert s.finished_folds(run) == [] and len(s.predictions(run)) == 0
        s.write_fold(run, 0, **fold_payload(0))  # and the fold can then be written
        assert s.finished_folds(run) == [0]


def test_resume_finds_only_matching_unfinished_run(tmp_path):
    with Store(tmp_path / "r.sqlite") as s:
        done = s.create_run(**RUN, provenance={})
        s.finish_run(done)
        assert s.find_unfinished(**RUN) is None
        run = s.create_run(**RUN, provenance={"git_commit": "abc"})
        other = {**RUN, "config": {**RUN["config"], "seed": 1}}
        assert s.find_unfinished(**RUN) == run
        assert s.find_unfinished(**other) is None
        s.fail_run(run, "killed")
        assert s.run(run)["error"] == "killed"
        assert s.find_unfinished(**RUN) == run  # a failed run is resumable too
        s.resume_run(run, {"git_commit": "def"})
        r = s.run(run)
        assert r["status"] == "running" and r["provenance"]["git_commit"] == "abc"
        assert r["provenance"]["resumed"][0]["git_commit"] == "def"


KILLED = """
import os, signal, sys
import numpy as np
sys.path.insert(0, {root!r})
from serbench.store import Store
from tests.test_store import RUN, fold_payload
s = Store({path!r})
run = s.create_run(**RUN, provenance={{}})
s.write_fold(run, 0, **fold_payload(0))
seen = []
def trace(sql):
    if sql.startswith("INSERT INTO predictions"):
        seen.append(sql)
        if len(seen) == 10:  # mid-fold: fold row and 9 predictions inserted, not committed
            os.kill(os.getpid(), signal.SIGKILL)
s._conn.set_trace_callback(trace)
s.write_fold(run, 1, **fold_payload(1))
"""


def test_kill_mid_fold_then_resume(tmp_path):
    root = str(__import__("pathlib").Path(__file__).resolve().parent.parent)
    path = str(tmp_path / "r.sqlite")
    proc = subprocess.run([sys.executable, "-c", KILLED.format(root=root, path=path)], cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    with Store(path) as s:
        run = s.find_unfinished(**RUN)
        assert run is not None
        assert s.finished_folds(run) == [0]  # fold 1 left nothing behind
        assert s.predictions(run)["fold"].unique().tolist() == [0]
        s.resume_run(run)
        s.write_fold(run, 1, **fold_payload(1))
        s.finish_run(run, n_folds=2)
        assert len(s.predictions(run)) == 40


WRITER = """
import sys, time, pathlib
sys.path.insert(0, {root!r})
from serbench.store import Store
from tests.test_store import RUN, fold_payload
go = pathlib.Path({go!r})
while not go.exists():
    time.sleep(0.01)
with Store({path!r}, timeout=60) as s:
    run = s.create_run(**{{**RUN, "config": {{**RUN["config"], "writer": {who}}}}}, provenance={{}})
    for k in range(25):
        time.sleep(0.02)  # "training" between folds, as in a real run
        s.write_fold(run, k, **fold_payload(k, n=100))
        s.add_measurements(run, {{f"m{{k}}": k}})
    s.finish_run(run, n_folds=25)
"""


def test_two_processes_write_at_once(tmp_path):
    root = str(__import__("pathlib").Path(__file__).resolve().parent.parent)
    path, go = str(tmp_path / "r.sqlite"), str(tmp_path / "go")
    Store(path).close()  # schema in place; the writers race on data, not on creating it
    procs = [subprocess.Popen([sys.executable, "-c", WRITER.format(root=root, path=path, go=go, who=i)],
                              cwd=root, stderr=subprocess.PIPE, text=True) for i in range(2)]
    time.sleep(1.0)
    open(go, "w").close()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with Store(path) as s:
        runs = s.runs()
        assert runs["status"].tolist() == ["finished", "finished"]
        for run in runs["id"]:
            assert s.finished_folds(run) == list(range(25))
            assert len(s.predictions(run)) == 2500
            assert len(s.measurements(run)) == 25
        # the two runs' writes interleaved in time (they really ran at once)
        f = s.fold_results()
        first_done = f.groupby("run_id")["finished"].max().min()
        assert (f.groupby("run_id")["finished"].min() < first_done).all()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    Store(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version=99")
    raw.close()
    with pytest.raises(SerbenchError, match="newer serbench"):
        Store(path)
    (tmp_path / "junk.sqlite").write_text("not a database at all" * 100)
    with pytest.raises(SerbenchError, match="not a usable results store"):
        Store(tmp_path / "junk.sqlite")


def test_runs_reads_a_store_mixing_finished_and_failed_runs(tmp_path):
    # a NULL summary (failed run) next to a JSON one must read back as None, not break runs()
    with store.Store(tmp_path / "mixed.sqlite") as db:
        cfg = {"synthetic": True, "weights_source": {"kind": "random", "seed": 0}}
        a = db.create_run(model="m", recipe="fp32", protocol="loso", mode="probe", config=cfg, provenance={})
        db.finish_run(a, {"ua": {"mean": 0.5, "std": None}})
        b = db.create_run(model="m", recipe="fp32", protocol="kfold", mode="probe", config=cfg, provenance={})
        db.fail_run(b, "killed")
        runs = db.runs()
    assert runs["summary"].tolist() == [{"ua": {"mean": 0.5, "std": None}}, None]


def test_a_schema_1_store_is_migrated_and_keeps_its_runs(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    old_schema = storefile.SCHEMA.replace(",\n    invocation  TEXT", "").replace("\n    speaker TEXT,", "")
    con.executescript(old_schema)
    con.execute("INSERT INTO runs (created, updated, model, recipe, protocol, mode, status, config_hash, config,"
                " provenance) VALUES ('t', 't', 'm', 'r', 'p', 'probe', 'running', 'h', '{}', '{}')")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    with store.Store(path) as db:
        runs = db.runs()
        assert list(runs["model"]) == ["m"] and runs["invocation"].isna().all()
        cols = [r[1] for r in db._conn.execute("PRAGMA table_info(predictions)")]
        assert "speaker" in cols
        assert db._conn.execute("PRAGMA user_version").fetchone()[0] == storefile.SCHEMA_VERSION
