"""``serbench tune --model M --recipe R --min-fidelity F [--weights W] [--out FILE] [--name NAME]``:
keep the most fidelity-sensitive node groups of a quantised recipe in float until it reaches the
target, and write that as a new recipe file (:func:`serbench.mixed_precision.tune` does the work;
this module parses and prints).
"""
from __future__ import annotations

import json

from tabulate import tabulate


def register(sub) -> None:
    p = sub.add_parser("tune", help="write a mixed-precision recipe: a quantised recipe with its most "
                                    "fidelity-sensitive node groups kept in float, to reach --min-fidelity")
    p.add_argument("--model", required=True, help="model entry name (see `serbench models`)")
    p.add_argument("--recipe", required=True, help="the quantised recipe to start from (one whose method has "
                                                   "nodes_to_exclude, e.g. static-int8)")
    p.add_argument("--min-fidelity", type=float, required=True,
                   help="target centred cosine against the reference recipe's ONNX artefact, in (0, 1]")
    p.add_argument("--weights", default="hub", help="hub (default) | PATH | random[:SEED]")
    p.add_argument("--name", help="the new recipe's name (default MODEL-RECIPE-minF)")
    p.add_argument("--out", help="write the recipe here (default: $SERBENCH_HOME/registry/recipes/NAME.yaml, "
                                 "where serbench finds it by name)")
    p.add_argument("--force", action="store_true", help="replace an existing file / shadow a recipe of that name")
    p.add_argument("--probe", type=int, default=16, help="fidelity probe clips (default 16, as bench)")
    p.add_argument("--calibration", type=int, default=32, help="calibration clips offered (default 32, as bench)")
    p.add_argument("--probe-data", metavar="NAME=PATH",
                   help="measure fidelity on utterances of this corpus, calibrate on other speakers (as bench)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --probe-data speaker split (default 0)")
    p.add_argument("--runs", type=int, default=10, help="timed runs for the latency of the result (default 10)")
    p.add_argument("--threads", type=int, help="CPU threads for inference (default: all usable cores)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def table(result: dict) -> str:
    rows = [(("*" if s["group"] in result["chosen"] else ""), s["group"], len(s["nodes"]), f"{s['fidelity']:.5f}",
             f"{s['gain']:+.5f}") for s in sorted(result["groups"], key=lambda s: -s["fidelity"])]
    return tabulate(rows, headers=["float", "node group", "nodes", "cos if only it is float", "gain"])


def run(args) -> int:
    from serbench.api import tune

    result = tune(args.model, args.recipe, args.min_fidelity, args.weights, name=args.name, out=args.out,
                  force=args.force, probe=args.probe, calibration=args.calibration, probe_data=args.probe_data,
                  seed=args.seed, runs=args.runs,
                  threads=args.threads, log=(lambda m: None) if args.json else print)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    for note in result["notes"]:
        print(f"note: {note}")
    if result["random_weights"]:
        print("NOTE: RANDOM-INIT weights: the sensitivities are of a random network")
    if result["groups"]:
        print("\n" + table(result) + "\n")
    else:
        print(f"\n{result['recipe']} already measures {result['base']['fidelity']:.5f} >= {result['min_fidelity']}: "
              "nothing kept float\n")
    b, f = result["base"], result["final"]
    print(tabulate([(result["recipe"], f"{b['fidelity']:.5f}", f"{b['size_mb']:.1f}", b["latency_p50_ms"],
                     b["speedup_vs_fp32"]),
                    (result["name"], f"{f['fidelity']:.5f}", f"{f['size_mb']:.1f}", f["latency_p50_ms"],
                     f["speedup_vs_fp32"])],
                   headers=["recipe", "centred cos", "MB", "p50 ms", "speed-up"]))
    print(f"\nspeed-up is to {result['reference']!r}, timed interleaved in this run; fidelity against its ONNX "
          f"artefact ({result['probe']['description']}). {len(result['chosen'])} of "
          f"{len(result['groups']) or 'the'} groups kept float ({len(result['float_nodes'])} nodes).")
    use = result["name"] if args.out is None else result["path"]
    print(f"wrote {result['path']}: use it as `--recipe {use}` (serbench run, serbench bench)")
    return 0
