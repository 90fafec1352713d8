"""``serbench sweep GRID.yaml``: a grid of runs planned as independent tasks, run here or on Ray.

The driver (this module, one process) reads the grid (:mod:`.grid`), opens one
:class:`~serbench.runner.Runner` per cell (corpora, audited folds, one store run per recipe), and
plans the cells' unfinished work as a graph of tasks (:mod:`.tasks`): artefact builds, reference
embeddings in chunks, and one task per fold. An executor (:mod:`.executors`) runs them, in this
process or on Ray; each result comes back as plain data and the driver alone writes the SQLite
store, so a cluster needs no shared database. When every task is done the driver finishes each
cell as ``serbench run`` does (pooled statistics, paired comparison, and, when the grid asks,
latency/memory measurement: serially, so nothing else runs while a model is timed).

The same seeded tasks run either way, so a sweep gives the same numbers in-process and on Ray.
Resumable: a killed sweep re-run with ``resume`` reopens each cell's unfinished runs, plans only
their missing folds and keeps the runs it had finished. A failed task is reported with its inputs
and the rest of the grid goes on; the cells it broke stay unfinished (failed), for a resume.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from serbench import store as store_mod
from serbench.progress import LOG as progress_log
from serbench.sweeps import grid as grid_mod
from serbench.sweeps import tasks as task_functions
from serbench.sweeps.executors import InProcess, OnRay, Task

CHUNK = 64   # utterances per embed task: small enough to spread, large enough to keep a worker busy
STAGES = ("build", "embed", "fold")


@dataclass
class Cell:
    runner: object
    run_ids: dict
    pending: list                   # [(fold, [recipes])]
    failures: list = field(default_factory=list)   # of its fold tasks (a failed build/embed reaches it through them)

    @property
    def name(self) -> str:
        s = self.runner.spec
        seed = f"seed{self.runner.seed}"
        return f"{s.model}/{self.runner.protocol.name}/{s.mode}/{self.runner.head_name}/{seed}"


def plan(cells: list[Cell], chunk: int = CHUNK, gpus: bool = False) -> list[Task]:
    """The tasks for every cell's pending folds, in dependency order. Artefact builds and
    reference embeddings are shared between cells that need the same ones (same model, weights
    and data); a calibrated recipe's artefact is built per cell and fold."""
    tasks: list[Task] = []
    by_id: dict[str, Task] = {}

    def add(task: Task) -> str:
        if task.id not in by_id:
            by_id[task.id] = task
            tasks.append(task)
        return task.id

    for cell in cells:
        r, spec = cell.runner, cell.runner.spec
        if not cell.pending:
            continue
        probe = spec.mode == "probe"
        data = hashlib.sha256(json.dumps({n: str(src.path) for n, src in r.sources.items()}, sort_keys=True)
                              .encode()).hexdigest()[:8]   # cells share embeddings only on the same corpora
        group = f"{spec.model}[{r.weights.get('sha256') or spec.weights}] data {data}"
        deps_all: list[str] = []
        if probe:
            fp32 = None
            if not r.entry.weight_free:
                fp32 = add(Task(f"build {group} {r.fp32.name}", "build", (spec, r.fp32.name, None),
                                inputs={"model": spec.model, "weights": spec.weights, "recipe": r.fp32.name}))
            keys = sorted({k for fold, _ in cell.pending for k in (*fold.train, *fold.val, *fold.test)})
            for i in range(0, len(keys), chunk):
                part = keys[i:i + chunk]
                deps_all.append(add(Task(
                    f"embed {group} {part[0]}..{part[-1]}", "embed", (spec, part), deps=[fp32] if fp32 else [],
                    gpu=gpus, inputs={"model": spec.model, "weights": spec.weights, "utterances": len(part),
                                      "first": part[0], "last": part[-1]})))
        for fold, recipes in cell.pending:
            deps = list(deps_all)
            if probe and not r.entry.weight_free:
                for rec in recipes:
                    if rec.is_reference:
                        continue
                    where = f"{cell.name} fold {fold.index}" if rec.calibration else group
                    deps.append(add(Task(f"build {where} {rec.name}", "build",
                                         (spec, rec.name, fold.index if rec.calibration else None),
                                         inputs={"model": spec.model, "recipe": rec.name,
                                                 "calibrated_on": f"fold {fold.index} training" if rec.calibration
                                                 else None})))
            add(Task(f"fold {cell.name} #{fold.index}", "fold", (spec, fold.index, [x.name for x in recipes]),
                     deps=deps, gpu=gpus and not probe, cell=cell,
                     inputs={"cell": cell.name, "fold": f"{fold.index} ({fold.name})",
                             "recipes": [x.name for x in recipes]}))
    return tasks


@dataclass
class SweepResult:
    finished: list[tuple]           # (runner, its RecipeResults) per finished cell
    failures: list[dict]            # {task, stage, reason, inputs}
    cells: int
    tasks: dict                     # stage -> count planned
    executor: str
    timings: dict                   # seconds: wall_s = executor_start_s (Ray start + stop) + driver_s
                                    # (plan_s + write_s + finish_s: the serial part) + tasks_s


def eta(planned: Counter, done: Counter, spent: dict[str, float]) -> float | None:
    """Seconds left: each stage's remaining tasks at that stage's measured pace (wall seconds per
    completed task); a stage with none done yet at the pace of all done so far. None before any."""
    finished = sum(done.values())
    if not finished:
        return None
    overall = sum(spent.values()) / finished
    return sum(max(planned[k] - done[k], 0) * (spent[k] / done[k] if done[k] else overall) for k in planned)


def run(grid_path: str | Path, *, ray: str | None = None, ray_cpus: int | None = None, cpus_per_task: int = 1,
        resume: bool = False, synthetic: bool | None = None, store: str | Path | None = None,
        progress: bool = True, log=print) -> SweepResult:
    """Run the grid (see the module docstring); ``ray``: ``None`` (in this process), ``"local"``
    or a cluster address. ``ray_cpus`` caps a local Ray's CPUs."""
    from serbench.runner import Runner

    t0 = time.perf_counter()
    timings = Counter()
    grid = grid_mod.load(grid_path)
    specs = grid.cells(synthetic)
    executor = InProcess() if ray is None else OnRay(ray, cpus=ray_cpus, cpus_per_task=cpus_per_task)
    timings["executor_start_s"] = time.perf_counter() - t0   # ray.init (0 in-process): not the driver's work
    failures: list[dict] = []
    try:
        with store_mod.Store(store) as db:
            cells = []
            for spec in specs:
                r = Runner(spec, store_path=store, resume=resume, progress=False, log=lambda *_: None,
                           keep_finished=True)
                ids = r.open(db)
                cells.append(Cell(r, ids, r.pending(db, ids)))
                if isinstance(executor, InProcess):   # tasks here reuse the driver's prepared runner
                    task_functions._RUNNERS[task_functions.spec_key(spec)] = r
            tasks = plan(cells, gpus=getattr(executor, "gpus", False))
            planned = Counter(t.kind for t in tasks)
            log(f"sweep {grid_path}: {len(cells)} cells, {sum(len(c.run_ids) for c in cells)} runs; "
                f"tasks {', '.join(f'{k} {planned[k]}' for k in STAGES)}; on {executor.name}")
            timings["plan_s"] = time.perf_counter() - t0 - timings["executor_start_s"]
            done_by = Counter()
            spent: dict[str, float] = Counter()   # wall seconds per stage, between completions
            last = [time.perf_counter()]
            # tqdm's own ETA assumes every task takes as long: a build takes 30 s, a fold 1 s
            bar = tqdm(total=len(tasks), desc="sweep", unit="task", disable=not progress,
                       bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

            def update(kind: str | None = None):
                now = time.perf_counter()
                if kind is not None:
                    spent[kind] += now - last[0]
                last[0] = now
                left = eta(planned, done_by, spent)
                bar.set_postfix_str(" ".join(f"{k} {done_by[k]}/{planned[k]}" for k in STAGES if planned[k])
                                    + (f" failed {len(failures)}" if failures else "")
                                    + ("" if left is None else f"; ETA ~{left:.0f} s from each stage's pace"),
                                    refresh=False)
                bar.update()

            def done(task: Task, value) -> None:
                if task.cell is not None:
                    start = time.perf_counter()
                    task.cell.runner.write(db, task.cell.run_ids, value)
                    timings["write_s"] += time.perf_counter() - start
                done_by[task.kind] += 1
                update(task.kind)

            def failed(task: Task, reason: str, detail: str | None = None) -> None:
                failures.append({"task": task.id, "stage": task.kind, "reason": reason, "inputs": task.inputs})
                if task.cell is not None:   # a build/embed failure reaches its cells through their folds
                    task.cell.failures.append(reason)
                bar.write(f"FAILED {task.id}: {reason}\n  inputs: {task.inputs}")
                update()

            start = time.perf_counter()
            try:
                with logging_redirect_tqdm(loggers=[progress_log]):   # step lines above the bar, not through it
                    executor.run(tasks, done, failed)
            except BaseException as exc:   # interrupted: the runs stay resumable
                for c in cells:
                    c.runner.fail(db, c.run_ids, exc)
                raise
            finally:
                bar.close()
            timings["tasks_s"] = time.perf_counter() - start - timings["write_s"]   # writes are the driver's
            start = time.perf_counter()
            finished = []
            for c in cells:
                if c.failures:   # (a fold missing for any other reason stops finish_run, below)
                    c.runner.fail(db, c.run_ids, RuntimeError(
                        f"{len(c.failures)} fold task(s) of this sweep cell failed: "
                        + "; ".join(c.failures[:3])))
                    continue
                try:   # statistics, measurement: one cell's failure does not cost the others
                    finished.append((c.runner, c.runner.finish(db, c.run_ids)))
                except Exception as exc:
                    failures.append({"task": f"finish {c.name}", "stage": "finish",
                                     "reason": f"{type(exc).__name__}: {exc}", "inputs": {"cell": c.name}})
                    c.runner.fail(db, c.run_ids, exc)
            timings["finish_s"] = time.perf_counter() - start
    finally:
        start = time.perf_counter()
        if isinstance(executor, OnRay):
            executor.close()
        task_functions._RUNNERS.clear()
        timings["executor_start_s"] += time.perf_counter() - start   # and its shutdown
    timings["wall_s"] = time.perf_counter() - t0
    timings["driver_s"] = timings["plan_s"] + timings["write_s"] + timings["finish_s"]
    return SweepResult(finished, failures, len(cells), {k: planned[k] for k in STAGES}, executor.name,
                       {k: round(v, 3) for k, v in timings.items()})


__all__ = ["Cell", "SweepResult", "plan", "run"]
