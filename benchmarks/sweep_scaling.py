"""How far does ``serbench sweep`` scale? One grid in-process, on Ray with 1 CPU and on Ray with every core.

    python benchmarks/sweep_scaling.py                         # the default grid (below), ~3-5 min on 2 cores
    python benchmarks/sweep_scaling.py --synthetic-size tiny   # faster, coarser
    python benchmarks/sweep_scaling.py --grid examples/grid.yaml --cache warm --json out.json

The default grid is the test grid of ``tests/test_sweep.py`` at ``synthetic_size: small``: egemaps
and ``tiny`` (``random:0``) x fp32 + dynamic-int8 x loso + kfold-random, synthetic, no latency
measurement (4 cells, 6 runs). It runs three ways, one after another in this process, each in a
home and a store of its own (``home=`` / ``store=``; ``SERBENCH_HOME`` is never set here):
  (a) in-process  ``ray=None``: every task in the driver, one after another,
  (b) ray-1       ``ray="local", ray_cpus=1``: the same tasks on a one-CPU local Ray (its fixed cost),
  (c) ray-N       ``ray="local"``: a local Ray on every core.
Every mode starts from a copy of the same template home, so each sees the same cache state
(``--cache``):
  data (default)  the grid's corpora already there (the synthetic ones generated once, beforehand),
                  artefact and embedding caches cold: a new sweep on data that exists;
  warm            a copy of the home of a warm-up sweep of the same grid: corpora, artefacts and
                  embeddings all cached (embed tasks are cache reads; mostly head training left);
  cold            an empty home each: every mode also generates the synthetic corpora (in its
                  driver, so that generation counts as serial planning time).
The ``--repeats`` repeats run the three modes in a rotating order; per-mode times are medians.

It prints, for each mode, the wall time, the driver's time (planning, store writes, finishing:
what never runs in parallel), the task phase (``tasks_s``, without the driver's store writes,
done as results arrive, nor Ray's start and stop, ``executor_start_s``), the speed-up over in-process, and whether every run's UA is the
same in all three (OK / MISMATCH). Then, from the fastest in-process sweep: the serial fraction
s = driver / wall, Ray's fixed overhead (ray-1 wall minus in-process wall, medians), Amdahl's projection
1 / (s + (1 - s) / N), and a stage-bounded projection: in-process each task is timed (a wrapper
around ``serbench.sweeps.tasks.FUNCTIONS``), and a stage of k tasks takes at least its longest
task and at least its total / N, so no stage uses more than k workers; the term that dominates
at the largest N names the stage that limits scaling. N counts workers as fast as the in-process
tasks were here (in-process a task may use every core: openSMILE embeds a clip per core,
onnxruntime its intra-op threads; a Ray task gets ``cpus_per_task`` = 1 thread: compare the task
times of in-process and ray-1). Before and after the sweeps a busy loop runs in one process, then in
one per core at once: how much parallelism the shared machine gave (the ceiling for ray-N here).
Exit status 1 on a mismatch or a failed task. Times are of one shared machine; read the ratios
within one run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from tabulate import tabulate

import serbench
from serbench import atomic, paths
from serbench.sweeps import STAGES
from serbench.sweeps import grid as grid_mod
from serbench.sweeps import tasks as task_functions

GRID = {"models": ["egemaps", {"name": "tiny", "weights": "random:0"}], "recipes": ["fp32", "dynamic-int8"],
        "protocols": ["loso", "kfold-random"], "synthetic": True, "synthetic_size": "small", "measure": False}
WORKERS = (2, 4, 8, 16, 64)
KEY = ("model", "recipe", "protocol", "mode", "head")
TIMINGS = ("wall_s", "driver_s", "plan_s", "write_s", "finish_s", "tasks_s", "executor_start_s")


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _spin(seconds: float) -> tuple[float, float]:
    """A pure-Python busy loop of fixed work (about ``seconds`` on an idle core): its start and end."""
    start, n = time.perf_counter(), int(seconds * 2e7)
    x = 0
    for i in range(n):
        x += i
    return start, time.perf_counter()


def headroom(n: int, seconds: float = 1.0) -> float:
    """How much parallelism the (shared) machine gives right now: the same busy loop in one process,
    then in ``n`` at once; ``n`` x one's time / the n's span (``n``: all free cores, 1: none)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(n, mp_context=ctx) as pool:
        list(pool.map(_spin, [0.05] * n))                      # the workers started
        a, b = pool.submit(_spin, seconds).result()
        spans = list(pool.map(_spin, [seconds] * n))
    return n * (b - a) / (max(e for _, e in spans) - min(s for s, _ in spans))


def write_grid(args, folder: Path) -> Path:
    """The grid to run: ``--grid`` as given (``--synthetic-size`` overriding its size), else :data:`GRID`."""
    values = yaml.safe_load(Path(args.grid).read_text()) if args.grid else dict(GRID)
    if args.synthetic_size:
        values["synthetic_size"] = args.synthetic_size
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    grid_mod.load(path).cells(args.synthetic)   # a bad grid fails here, before anything runs
    return path


def template_home(grid: Path, how: str, folder: Path, synthetic) -> float:
    """Fill ``folder`` (the home every mode copies) as ``--cache`` says; seconds it took."""
    from serbench.runner import Runner

    folder.mkdir(parents=True)
    start = time.perf_counter()
    if how == "data":       # what each cell's driver prepares first: the corpora (generated when synthetic)
        with paths.using_home(folder):
            for spec in grid_mod.load(grid).cells(synthetic):
                Runner(spec, progress=False, log=lambda *_: None)._prepare()
    elif how == "warm":     # a whole sweep: corpora, artefacts, embeddings all cached
        serbench.sweep(grid, synthetic=synthetic, home=folder, store=folder.parent / "warm-up.sqlite")
    return time.perf_counter() - start


@contextlib.contextmanager
def task_clock(durations: list):
    """Time every task function run in this process (in-process mode only: Ray workers import
    their own copy): ``(stage, seconds, model)`` appended to ``durations``."""
    real = dict(task_functions.FUNCTIONS)

    def timed(kind, fn):
        def call(*args):
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                durations.append((kind, time.perf_counter() - start, getattr(args[0], "model", "?")))
        return call

    task_functions.FUNCTIONS.update({k: timed(k, f) for k, f in real.items()})
    try:
        yield
    finally:
        task_functions.FUNCTIONS.update(real)


def sweep_once(mode: str, grid: Path, template: Path, scratch: Path, synthetic, durations: list | None) -> dict:
    """One sweep of ``grid`` in ``mode``, in a fresh copy of the template home and a fresh store."""
    where = Path(tempfile.mkdtemp(dir=scratch, prefix=f"{mode}-"))
    home, store = where / "home", where / "results.sqlite"
    shutil.copytree(template, home)
    options = {"in-process": {}, "ray-1": {"ray": "local", "ray_cpus": 1}, "ray-N": {"ray": "local"}}[mode]
    clock = task_clock(durations) if durations is not None else contextlib.nullcontext()
    start = time.perf_counter()
    with clock:
        df = serbench.sweep(grid, synthetic=synthetic, home=home, store=store, **options)
    outer = time.perf_counter() - start
    shutil.rmtree(where, ignore_errors=True)
    ua = {"/".join(str(getattr(r, k)) for k in KEY): float(r.ua) for r in df.itertuples()}
    return {"timings": dict(df.attrs["timings"]), "outer_s": outer, "tasks": dict(df.attrs["tasks"]),
            "executor": df.attrs["executor"], "cells": df.attrs["cells"], "failures": df.attrs["failures"], "ua": ua,
            "load": os.getloadavg()[0]}


def median_timings(runs: list[dict]) -> dict:
    return {k: statistics.median(r["timings"].get(k, 0.0) for r in runs) for k in TIMINGS}


def stage_stats(durations: list) -> dict:
    """Per stage: task count, total, longest (and its model) and median task seconds (in-process)."""
    out = {}
    for stage in STAGES:
        ds = [(d, m) for k, d, m in durations if k == stage]
        if ds:
            longest = max(ds)
            out[stage] = {"tasks": len(ds), "total_s": sum(d for d, _ in ds), "max_s": longest[0],
                          "max_model": longest[1], "median_s": statistics.median(d for d, _ in ds)}
    return out


def projections(t: dict, stages: dict) -> tuple[float, list[dict]]:
    """Amdahl's speed-up from s = driver / wall, and a stage-bounded one: the driver's time, plus
    whatever of the task phase no task accounts for (executor bookkeeping), both serial, plus per
    stage max(total / N, longest task), stages one after another (pessimistic: the stages of
    different cells overlap in fact)."""
    wall, driver = t["wall_s"], t["driver_s"]
    s = driver / wall
    other = max(0.0, wall - driver - sum(v["total_s"] for v in stages.values()))
    rows = []
    for n in WORKERS:
        terms = {"driver": driver, "other": other,
                 **{k: max(v["total_s"] / n, v["max_s"]) for k, v in stages.items()}}
        bounded = sum(terms.values())
        rows.append({"workers": n, "amdahl": 1 / (s + (1 - s) / n), "stage_bounded": wall / bounded if stages else None,
                     "terms_s": terms, "stage_bound_hit": [k for k, v in stages.items() if v["max_s"] >= v["total_s"] / n]})
    return s, rows


def limiter(t: dict, stages: dict, last: dict) -> str:
    """What bounds the wall time at the largest worker count: the biggest serial term, or a stage
    stuck at its longest task."""
    parts = {"driver planning (plan_s)": t["plan_s"], "driver store writes (write_s)": t["write_s"],
             "driver finishing (finish_s)": t["finish_s"], "executor bookkeeping": last["terms_s"]["other"]}
    for k, v in stages.items():
        bound = "longest task" if v["max_s"] >= v["total_s"] / last["workers"] else f"total / {last['workers']}"
        parts[f"{k} stage ({v['tasks']} tasks, {bound})"] = last["terms_s"][k]
    name, secs = max(parts.items(), key=lambda kv: kv[1])
    total = sum(parts.values())
    return f"{name}: {secs:.2f} s of the {total:.2f} s projected at N={last['workers']} ({100 * secs / total:.0f} %)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", help="a grid file (default: the test grid at synthetic_size small)")
    p.add_argument("--synthetic-size", choices=grid_mod.SIZES, help="override the grid's synthetic_size")
    p.add_argument("--synthetic", action="store_true", default=None, help="as `serbench sweep --synthetic`")
    p.add_argument("--cache", choices=("data", "warm", "cold"), default="data",
                   help="the cache state every mode starts from (see above; default data)")
    p.add_argument("--repeats", type=int, default=1, help="sweeps per mode, in a rotating order (medians)")
    p.add_argument("--json", help="also write every measurement to this JSON file")
    args = p.parse_args(argv)

    modes = ("in-process", "ray-1", "ray-N")
    n_cores = cores()
    began = time.perf_counter()
    room = [headroom(n_cores)]
    with tempfile.TemporaryDirectory(prefix="serbench-sweep-scaling-") as tmp:
        scratch = Path(tmp)
        grid = write_grid(args, scratch)
        values = yaml.safe_load(grid.read_text())
        template = scratch / "template-home"
        prep = template_home(grid, args.cache, template, args.synthetic)
        print(f"grid: {args.grid or 'default (test grid)'}, synthetic_size {values.get('synthetic_size', 'small')}; "
              f"cache state of every mode: {args.cache} (template home prepared in {prep:.1f} s); "
              f"{n_cores} cores, of which a busy loop gets {room[0]:.2f}x in parallel now; load {os.getloadavg()[0]:.2f}",
              flush=True)
        runs = {m: [] for m in modes}
        for rep in range(args.repeats):
            for mode in modes[rep % 3:] + modes[:rep % 3]:
                mine: list = []
                res = sweep_once(mode, grid, template, scratch, args.synthetic, mine if mode == "in-process" else None)
                if mode == "in-process":
                    res["task_durations"] = mine
                runs[mode].append(res)
                t = res["timings"]
                print(f"  repeat {rep + 1} {mode:10s} wall {t['wall_s']:6.1f} s (driver {t['driver_s']:.1f} s, "
                      f"tasks {t['tasks_s']:.1f} s) on {res['executor']}; "
                      f"{sum(res['tasks'].values())} tasks; load {res['load']:.2f}", flush=True)

    room.append(headroom(n_cores))
    med = {m: median_timings(runs[m]) for m in modes}
    base = med["in-process"]
    tasks = runs["in-process"][0]["tasks"]
    # the same UA per run, in every mode and repeat
    keys = sorted({k for m in modes for r in runs[m] for k in r["ua"]})
    ua_rows, same = [], True
    for k in keys:
        vals = [r["ua"].get(k) for m in modes for r in runs[m]]
        ok = None not in vals and len(set(vals)) == 1
        same &= ok
        ua_rows.append([k] + [runs[m][0]["ua"].get(k) for m in modes] + ["OK" if ok else "MISMATCH"])
    failures = {m: [f for r in runs[m] for f in r["failures"]] for m in modes}

    print(f"\nthe grid: {runs['in-process'][0]['cells']} cells, {len(keys)} runs; tasks "
          + ", ".join(f"{k} {tasks[k]}" for k in STAGES) + f"; median of {args.repeats} sweep(s) per mode")
    rows = []
    for m in modes:
        t = med[m]
        rows.append([m, runs[m][0]["executor"], f"{t['wall_s']:.1f}",
                     f"{t['driver_s']:.1f} ({t['plan_s']:.1f}/{t['write_s']:.1f}/{t['finish_s']:.1f})",
                     f"{t['tasks_s']:.1f}", f"{base['wall_s'] / t['wall_s']:.2f}x",
                     "ok" if not failures[m] else f"{len(failures[m])} FAILED"])
    print(tabulate(rows, headers=["mode", "executor", "wall s", "driver s (plan/writes/finish)", "tasks s",
                                  "speed-up vs in-process", "tasks"]))
    print(f"\nUA per run ({'OK: identical in every mode' if same else 'MISMATCH'}):")
    print(tabulate(ua_rows, headers=["run (model/recipe/protocol/mode/head)", *modes, "check"], floatfmt=".6f"))

    # the projection from one consistent sweep: the fastest in-process one (the least disturbed by other load)
    fastest = min(runs["in-process"], key=lambda r: r["timings"]["wall_s"])
    one = {k: fastest["timings"].get(k, 0.0) for k in TIMINGS}
    stages = stage_stats(fastest["task_durations"])
    s, proj = projections(one, stages)
    each = ", ".join(f"{r['timings']['driver_s'] / r['timings']['wall_s']:.3f}" for r in runs["in-process"])
    overhead = med["ray-1"]["wall_s"] - base["wall_s"]
    print(f"\nserial fraction s = driver / wall of the fastest in-process sweep = {one['driver_s']:.2f} / "
          f"{one['wall_s']:.2f} = {s:.3f} (plan {one['plan_s']:.2f} s, store writes {one['write_s']:.2f} s, finish "
          f"{one['finish_s']:.2f} s; every in-process sweep: {each}); Amdahl's ceiling 1/s = {1 / s:.1f}x"),
    print(f"Ray's fixed overhead: ray-1 wall - in-process wall = {overhead:+.1f} s "
          f"({overhead / base['wall_s']:+.0%} of in-process: Ray's start and stop "
          f"{med['ray-1'].get('executor_start_s', 0):.1f} s, task time {med['ray-1']['tasks_s']:.1f} s vs "
          f"{base['tasks_s']:.1f} s: each worker process imports serbench and prepares each cell it meets, and "
          f"in-process tasks may use every core's threads, a 1-CPU Ray task one)")
    print(f"measured on {n_cores} cores: ray-N / in-process {base['wall_s'] / med['ray-N']['wall_s']:.2f}x, "
          f"ray-N / ray-1 {med['ray-1']['wall_s'] / med['ray-N']['wall_s']:.2f}x "
          f"(Amdahl for {n_cores}: {1 / (s + (1 - s) / n_cores):.2f}x); the shared machine gave a busy loop "
          f"{room[0]:.2f}x / {room[1]:.2f}x on {n_cores} processes (before / after the sweeps): the ceiling here")
    if stages:
        print("\ntasks per stage, timed in that sweep (a stage of k tasks uses at most k workers):")
        print(tabulate([[k, v["tasks"], f"{v['total_s']:.2f}", f"{v['median_s']:.3f}", f"{v['max_s']:.3f} ({v['max_model']})",
                         f"{v['total_s'] / v['max_s']:.1f}"] for k, v in stages.items()],
                       headers=["stage", "tasks", "total s", "median task s", "longest task s",
                                "useful workers (total/longest)"]))
    print("\nprojected speed-up over that in-process sweep with N workers (no Ray overhead counted):")
    print(tabulate([[r["workers"], f"{r['amdahl']:.2f}x",
                     "-" if r["stage_bounded"] is None else f"{r['stage_bounded']:.2f}x",
                     ", ".join(r["stage_bound_hit"]) or "-"] for r in proj],
                   headers=["N", "Amdahl 1/(s+(1-s)/N)", "stage-bounded", "stages at their longest task"]))
    limit = limiter(one, stages, proj[-1]) if stages else "driver (no task timings)"
    print(f"limits scaling: {limit}")
    print(f"benchmark took {time.perf_counter() - began:.0f} s")

    if args.json:
        atomic.write_text(Path(args.json), json.dumps({
            "grid": values, "cache": args.cache, "template_s": prep, "cores": n_cores, "headroom": room, "repeats": args.repeats,
            "runs": runs, "median_timings": med, "tasks": tasks, "ua_identical": same, "failures": failures,
            "serial_fraction": s, "ray_fixed_overhead_s": overhead, "stages": stages, "projection": proj,
            "limiter": limit}, indent=2, default=str), what="sweep scaling results")
    return 0 if same and not any(failures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
