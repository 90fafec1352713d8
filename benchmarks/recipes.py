"""The models x recipes table, as ratios to the reference (fp32) measured in one run, and the issue's targets.

    python benchmarks/recipes.py                       # every model entry but `tiny`, random init
    python benchmarks/recipes.py --models distilhubert --json out.json

Each model is measured by ``serbench.recipe_bench.bench``: all its recipes are timed interleaved
with its reference recipe's fp32 ONNX artefact in the same process, so the ratios hold even on a
shared machine; fidelity is against that artefact too.
Random-init weights by default (no hub access needed; sizes and speeds do not depend on the
values, fidelity does somewhat) and labelled as such. Slow: minutes per base-size model.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from tabulate import tabulate

from serbench import registry
from serbench.recipe_bench import bench
from serbench.commands.bench import table
from serbench.errors import SerbenchError

def _small_and_faithful(rows: dict) -> bool:
    """Some recipe at <= 16 MB with centred cosine >= 0.95 (issue 15's sub-23 MB target)."""
    return any(r.get("size_mb", 1e9) <= 16.0 and (r.get("fidelity") or {}).get("centered_cosine", 0) >= 0.95
               for r in rows.values())


# the issues' "done when", checked on DistilHuBERT: (recipes it needs, check)
TARGETS = {
    "static-int8 size <= 24 MB": (("static-int8",), lambda r: r["static-int8"]["size_mb"] <= 24.0),
    "static-int8 >= 3.0x faster than ORT fp32": (("static-int8",),
                                                 lambda r: r["static-int8"]["speedup_vs_fp32"] >= 3.0),
    "static-int8 centred cosine >= 0.97": (("static-int8",),
                                           lambda r: r["static-int8"]["fidelity"]["centered_cosine"] >= 0.97),
    "dynamic-int8 no slower than fp32": (("dynamic-int8",),
                                         lambda r: "SLOWER-THAN-FP32" not in r["dynamic-int8"]["flags"]),
    "a recipe <= 16 MB at centred cosine >= 0.95": ((), _small_and_faithful),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="comma-separated model entries (default: all but tiny)")
    p.add_argument("--recipes", help="comma-separated recipes (default: all)")
    p.add_argument("--weights", default="random:0", help="weights spec for every model (default random:0)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--probe", type=int, default=16)
    p.add_argument("--calibration", type=int, default=32)
    p.add_argument("--threads", type=int)
    p.add_argument("--no-energy", action="store_true")
    p.add_argument("--no-rss", action="store_true")
    p.add_argument("--json", help="also write every measurement to this JSON file")
    args = p.parse_args(argv)
    models = args.models.split(",") if args.models else [m.name for m in registry.models() if m.name != "tiny"]
    recipes = args.recipes.split(",") if args.recipes else [r.name for r in registry.recipes()]
    results, summary = [], []
    for name in models:
        entry = registry.load_model(name)
        wanted = [] if entry.weight_free else recipes   # bench always measures the reference recipe
        start = time.time()
        try:
            res = bench(name, wanted, args.weights if not entry.weight_free else "hub", repeats=args.repeats,
                        probe=args.probe, calibration=args.calibration, threads=args.threads,
                        energy=not args.no_energy, rss=not args.no_rss, log=print)
        except SerbenchError as exc:
            print(f"{name}: FAILED: {exc}")
            summary.append((name, "FAILED", "-", "-", "-", str(exc)[:60]))
            continue
        results.append(res)
        print(f"\n{name} ({res['weights_label']}), {time.time() - start:.0f} s")
        print(table(res), flush=True)
        for r in res["rows"]:
            if "error" in r:
                summary.append((name, r["recipe"], "-", "-", "-", "ERROR"))
            else:
                summary.append((name, r["recipe"], r.get("size_ratio_vs_fp32", "-"), r.get("speedup_vs_fp32", "-"),
                                r["fidelity"]["centered_cosine"], " ".join(r["flags"]) or "ok"))
    print("\nmodels x recipes, ratios to fp32 measured in the same run:")
    print(tabulate(summary, headers=["model", "recipe", "size/fp32", "speed-up", "centred cos", "flags"]))
    by_model = {r["model"]: {row["recipe"]: row for row in r["rows"]} for r in results}
    failed = 0
    if "distilhubert" in by_model:
        print("\ntargets (DistilHuBERT):")
        rows = by_model["distilhubert"]
        for label, (needs, check) in TARGETS.items():
            if any(n not in rows for n in needs):
                print(f"  n/a   {label} (not measured in this run)")
                continue
            try:
                ok = bool(check(rows))
            except (KeyError, TypeError):
                ok = False
            failed += not ok
            print(f"  {'PASS' if ok else 'FAIL'}  {label}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
