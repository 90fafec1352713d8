"""serbench sweep: the grid file, the plan, in-process vs Ray, resume after a kill, failed tasks."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import serbench
from serbench import store as store_mod
from serbench.errors import SerbenchError
from serbench.sweeps import grid as grid_mod

GRID = {"models": ["egemaps", {"name": "tiny", "weights": "random:0"}], "recipes": ["fp32", "dynamic-int8"],
        "protocols": ["loso", "kfold-random"], "synthetic": True, "synthetic_size": "tiny", "measure": False}


def write_grid(folder: Path, **changes) -> Path:
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump({**GRID, **changes}))
    return path


def content(store_path: Path) -> pd.DataFrame:
    """What a store holds, independent of run ids and times: one row per (run, fold)."""
    with store_mod.Store(store_path) as db:
        runs = db.runs()
        rows = []
        for r in runs.itertuples():
            preds = db.predictions(r.id)
            for fold, p in preds.groupby("fold"):
                rows.append({"model": r.model, "recipe": r.recipe, "protocol": r.protocol, "status": r.status,
                             "fold": int(fold), "utts": tuple(p["utt_id"]), "pred": tuple(p["y_pred"])})
    return pd.DataFrame(rows).sort_values(["model", "recipe", "protocol", "fold"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """The test grid run once in this process (2 models x 2 recipes x 2 protocols)."""
    folder = tmp_path_factory.mktemp("sweep")
    df = serbench.sweep(write_grid(folder), home=folder / "home", store=folder / "results.sqlite")
    return folder, df


def test_grid_cells_expand_models_protocols_and_give_weight_free_models_only_the_reference(tmp_path):
    cells = grid_mod.load(write_grid(tmp_path)).cells()
    assert [(c.model, c.protocol, c.recipes) for c in cells] == [
        ("egemaps", "loso", ("fp32",)), ("egemaps", "kfold-random", ("fp32",)),
        ("tiny", "loso", ("fp32", "dynamic-int8")), ("tiny", "kfold-random", ("fp32", "dynamic-int8"))]
    assert {c.weights for c in cells if c.model == "tiny"} == {"random:0"}
    seeds = grid_mod.load(write_grid(tmp_path, seeds=[1, 2], models=["egemaps"])).cells()
    assert [(c.protocol, c.seed) for c in seeds] == [("loso", 1), ("loso", 2), ("kfold-random", 1),
                                                    ("kfold-random", 2)]


@pytest.mark.parametrize("change, message", [
    ({"protocol": ["loso"]}, "field 'protocol'"),                 # a typo is an unknown key
    ({"modes": ["train"]}, "field 'modes'"),
    ({"seeds": ["one"]}, "field 'seeds'"),
    ({"models": [{"weights": "random:0"}]}, "models[0].name"),
    ({"recipes": ["no-such-recipe"]}, "no-such-recipe"),
])
def test_a_bad_grid_file_is_an_error_naming_the_field(tmp_path, change, message):
    path = write_grid(tmp_path, **change)
    with pytest.raises(SerbenchError, match=None) as err:
        grid_mod.load(path).cells()
    assert message in str(err.value) and (str(path) in str(err.value) or "recipe" in message)


def test_in_process_sweep_stores_every_run_with_the_numbers_of_serbench_run(in_process, tmp_path):
    folder, df = in_process
    assert len(df) == 6 and df.attrs["failures"] == []
    assert df.attrs["tasks"]["fold"] == 20                     # 4 cells x 5 folds
    assert set(zip(df.model, df.protocol)) == {(m, p) for m in ("egemaps", "tiny") for p in ("loso", "kfold-random")}
    content_ = content(folder / "results.sqlite")
    assert set(content_["status"]) == {"finished"}
    with store_mod.Store(folder / "results.sqlite") as db:       # where every embedding was made
        hardware = [d["hardware"] for d in db.fold_results()["details"]]
    assert len(hardware) == 30 and all(h["test_embeddings"].startswith("cpu: ") for h in hardware)
    assert all(h["train_val_embeddings"].startswith("cpu: ") for h in hardware)
    # the same cell through `serbench run` (one process, no tasks) gives the same UA
    one = serbench.run("tiny", "kfold-random", ("fp32", "dynamic-int8"), weights="random:0", synthetic=True,
                       synthetic_size="tiny", measure=False, home=tmp_path / "h")
    mine = df[(df.model == "tiny") & (df.protocol == "kfold-random")].set_index("recipe")
    for r in one.itertuples():
        assert mine.loc[r.recipe, "ua"] == r.ua
    # the report reads a sweep's store like any other
    rep = serbench.compare(store=folder / "results.sqlite", figures=False, home=folder / "home")
    assert len(rep.runs) == 6


@pytest.mark.slow
def test_ray_local_gives_the_same_ua_per_run_as_in_process(in_process, tmp_path):
    pytest.importorskip("ray")
    folder, df = in_process
    on_ray = serbench.sweep(write_grid(tmp_path), ray="local", home=tmp_path / "home",
                            store=tmp_path / "results.sqlite")
    assert on_ray.attrs["executor"].startswith("ray") and on_ray.attrs["failures"] == []
    key = ["model", "recipe", "protocol"]
    a = df.set_index(key).sort_index()[["ua", "wa", "macro_f1"]]
    b = on_ray.set_index(key).sort_index()[["ua", "wa", "macro_f1"]]
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(content(folder / "results.sqlite"), content(tmp_path / "results.sqlite"))


def _folds_stored(store_path: Path) -> int:
    try:
        with sqlite3.connect(store_path, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM folds").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_a_killed_sweep_resumed_ends_with_the_store_of_an_uninterrupted_one(in_process, tmp_path):
    folder, _ = in_process
    grid, store_path = write_grid(tmp_path), tmp_path / "results.sqlite"
    env = {**os.environ, "SERBENCH_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "serbench", "sweep", str(grid), "--store", str(store_path), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    while _folds_stored(store_path) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)                    # no clean-up runs: as a lost node or `kill -9`
    proc.wait()
    killed = content(store_path)
    assert 0 < len(killed) < 40 and "running" in set(killed["status"])
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = content(store_path)
    pd.testing.assert_frame_equal(resumed, content(folder / "results.sqlite"))   # same runs, folds, predictions
    # resuming again redoes nothing and adds no run
    again = serbench.sweep(grid, resume=True, home=tmp_path / "home", store=store_path)
    assert again.attrs["tasks"] == {"build": 0, "embed": 0, "fold": 0} and len(again) == 6
    pd.testing.assert_frame_equal(content(store_path), resumed)


def test_a_failed_task_is_reported_with_its_inputs_and_the_rest_of_the_grid_goes_on(tmp_path, monkeypatch):
    from serbench.sweeps import tasks

    real = tasks.FUNCTIONS["fold"]

    def fold(spec, index, recipes, *inputs):
        if spec.protocol == "kfold-random" and index == 2:
            raise RuntimeError("disk on fire")
        return real(spec, index, recipes, *inputs)

    monkeypatch.setitem(tasks.FUNCTIONS, "fold", fold)
    grid = write_grid(tmp_path, models=["egemaps"])
    df = serbench.sweep(grid, home=tmp_path / "home", store=tmp_path / "results.sqlite")
    assert list(df.protocol) == ["loso"]                    # the loso cell finished
    [failure] = df.attrs["failures"]
    assert failure["task"].startswith("fold egemaps/kfold-random") and "disk on fire" in failure["reason"]
    assert failure["inputs"]["fold"].startswith("2 ")
    with store_mod.Store(tmp_path / "results.sqlite") as db:
        runs = db.runs().set_index("protocol")
    assert runs.loc["kfold-random", "status"] == "failed" and runs.loc["loso", "status"] == "finished"
    # fixed, a resume does only the missing fold
    monkeypatch.setitem(tasks.FUNCTIONS, "fold", real)
    again = serbench.sweep(grid, resume=True, home=tmp_path / "home", store=tmp_path / "results.sqlite")
    assert again.attrs["tasks"]["fold"] == 1 and set(again.protocol) == {"loso", "kfold-random"}


def test_the_plan_shares_reference_embeddings_between_protocols_and_builds_calibrated_recipes_per_fold(tmp_path):
    from serbench.runner import Runner
    from serbench.sweeps import Cell, plan

    from serbench import paths

    with paths.using_home(tmp_path / "home"):
        grid = grid_mod.load(write_grid(tmp_path, models=[{"name": "tiny", "weights": "random:0"}],
                                        recipes=["fp32", "static-int8", "dynamic-int8"]))
        cells = []
        with store_mod.Store(tmp_path / "s.sqlite") as db:
            for spec in grid.cells():
                r = Runner(spec, progress=False, log=lambda *_: None)
                ids = r.open(db)
                cells.append(Cell(r, ids, r.pending(db, ids)))
        tasks = plan(cells)
    kinds = pd.Series([t.kind for t in tasks]).value_counts().to_dict()
    n_utts = len(cells[0].runner.table)
    # both protocols split the same corpus: its embeddings are planned once
    assert kinds["embed"] == -(-n_utts // 64)
    # fp32 and dynamic-int8 once for the model; static-int8 per protocol x fold (calibrated on training)
    assert kinds["build"] == 2 + 2 * 5 and kinds["fold"] == 10
    ids = [t.id for t in tasks]
    for t in tasks:                                         # dependency order
        assert all(ids.index(d) < ids.index(t.id) for d in t.deps)


def test_ray_without_the_extra_installed_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)           # `import ray` fails as if not installed
    with pytest.raises(SerbenchError, match=r"serbench\[ray\]"):
        serbench.sweep(write_grid(tmp_path), ray="local", home=tmp_path / "home")


def test_a_cell_that_fails_to_finish_is_reported_and_the_others_finish(tmp_path, monkeypatch):
    from serbench.runner import Runner

    real = Runner.finish

    def finish(self, db, run_ids):
        if self.protocol.name == "loso":
            raise OSError("no space left on the device")
        return real(self, db, run_ids)

    monkeypatch.setattr(Runner, "finish", finish)
    df = serbench.sweep(write_grid(tmp_path, models=["egemaps"]), home=tmp_path / "home",
                        store=tmp_path / "results.sqlite")
    assert list(df.protocol) == ["kfold-random"]
    [failure] = df.attrs["failures"]
    assert failure["stage"] == "finish" and "egemaps/loso" in failure["task"] and "no space" in failure["reason"]


def test_the_sweep_eta_counts_each_stage_at_its_own_pace():
    """Two slow builds done, ten quick folds planned: tqdm's uniform ETA would charge each fold a
    build's 30 s; the stage pace charges the embed and folds the pace of all done so far, then their own."""
    from collections import Counter

    from serbench.sweeps import eta

    planned = Counter(build=2, embed=1, fold=10)
    assert eta(planned, Counter(), {}) is None
    assert eta(planned, Counter(build=2), {"build": 60.0}) == pytest.approx(11 * 30.0)
    got = eta(planned, Counter(build=2, embed=1, fold=2), {"build": 60.0, "embed": 3.0, "fold": 2.0})
    assert got == pytest.approx(8 * 1.0)
    assert eta(planned, Counter(build=2, embed=1, fold=10), {"build": 60, "embed": 3, "fold": 10}) == 0
