"""``serbench sweep GRID.yaml``: every run of a grid, in this process or on Ray; one summary table."""
from __future__ import annotations

import json
import sys

from tabulate import tabulate


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of models x recipes x protocols x heads x modes x seeds "
                                     "(in this process, or on Ray with --ray)")
    p.add_argument("grid", help="grid file (YAML; see examples/grid.yaml)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run the tasks on Ray: 'local' starts one on this machine's cores, 'auto' or "
                        "HOST:PORT / ray://HOST:10001 joins a running cluster (needs serbench[ray])")
    p.add_argument("--ray-cpus", type=int, help="with --ray local: how many CPUs it may use (default all)")
    p.add_argument("--cpus-per-task", type=int, default=1, help="CPUs (and threads) each Ray task asks for (default 1)")
    p.add_argument("--synthetic", action="store_true", help="use the built-in synthetic corpora (overrides the grid)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted sweep of this grid: finished runs are kept, unfinished "
                        "runs redo only their missing folds")
    p.add_argument("--store", help="results database (default $SERBENCH_HOME/results.sqlite)")
    p.add_argument("--json", action="store_true", help="print the runs and failures as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from serbench import api, fmt

    quiet = args.quiet or args.json
    df = api.sweep(args.grid, ray=args.ray, resume=args.resume, synthetic=True if args.synthetic else None,
                   store=args.store, progress=not quiet, log=(lambda *_: None) if quiet else print,
                   ray_cpus=args.ray_cpus, cpus_per_task=args.cpus_per_task)
    failures = df.attrs["failures"]
    if args.json:
        print(json.dumps({"runs": df.attrs["runs"], "failures": failures, "tasks": df.attrs["tasks"],
                          "timings": df.attrs["timings"]}, indent=2, default=str))
        return 1 if failures else 0
    rows = [[r.run_id, r.model, r.recipe, r.protocol, r.mode, r.head,
             fmt.ci(r.ua, r.ua_ci_low, r.ua_ci_high, missing="-"), fmt.num(r.size_mb, ".1f", missing="-"),
             "SYNTHETIC" if r.synthetic else "", r.weights] for r in df.itertuples()]
    print(tabulate(rows, headers=["run", "model", "recipe", "protocol", "mode", "head", "UA % [95% CI]",
                                  "size MB", "data", "weights"], disable_numparse=True))
    t = df.attrs["timings"]
    print(f"\n{len(df)} run(s) finished in {t['wall_s']:.0f} s on {df.attrs['executor']} "
          f"(driver {t['driver_s']:.1f} s: plan {t['plan_s']:.1f}, store writes {t.get('write_s', 0):.1f}, "
          f"finish {t['finish_s']:.1f}); see them with `serbench compare`")
    if failures:
        print(f"\n{len(failures)} task(s) FAILED (their cells are left unfinished; fix and re-run with --resume):",
              file=sys.stderr)
        for f in failures:
            print(f"  {f['task']}: {f['reason']}\n    inputs: {f['inputs']}", file=sys.stderr)
        return 1
    return 0
