"""``serbench export --run ID [--recipe R] [--fold K] OUT``: a run's model as a deployable folder.

A thin wrapper: :func:`serbench.deploy.export` writes the folder and returns its model card; this
parses the arguments and prints a summary of the card (or the card as JSON)."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("export", help="write a self-contained deployable model (one ONNX graph, labels, "
                                      "preprocessing, model card, standalone infer.py)")
    p.add_argument("out", metavar="OUT", help="folder to write (must not exist or be empty, unless --force)")
    p.add_argument("--run", type=int, required=True, help="store run id (any run of a `serbench run` invocation)")
    p.add_argument("--recipe", help="compression recipe of the backbone (default: the run's own)")
    p.add_argument("--fold", type=int, default=0, help="whose fold's trained head (default 0; production has one)")
    p.add_argument("--store", help="results database (default $SERBENCH_HOME/results.sqlite)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-latency", action="store_true", help="do not time the exported graph")
    p.add_argument("--quiet", action="store_true", help="no progress lines (the result is still printed)")
    p.add_argument("--json", action="store_true", help="print the model card as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from serbench import api, fmt

    card = api.export(args.run, args.out, recipe=args.recipe, fold=args.fold, store=args.store, force=args.force,
                      measure_latency=not args.no_latency, log=None if args.json or args.quiet else print)
    if args.json:
        print(json.dumps(card, indent=2, default=str))
        return 0
    acc = card["accuracy"]
    ua = acc.get("ua") if acc.get("measured_by_run") else None
    ua_text = "not measured" if ua is None else fmt.mean_std(ua["mean"], ua.get("std")) + " %"
    lat = card["latency"]
    print(f"exported {card['model']} {card['recipe']} (run {card['run_id']}, fold {card['fold']}) to {args.out}")
    print(f"  UA {ua_text}; model.onnx {card['size']['model_onnx_mb']:.2f} MB"
          + (f"; {lat['p50_ms']:.0f} ms per {lat['window_s']:g} s window on {lat['threads']} threads" if lat else ""))
    print(f"  weights: {card['weights']}" + ("; DATA: SYNTHETIC" if card["data"].get("synthetic") else ""))
    print(f"  run it: python {args.out}/infer.py AUDIO...   (needs onnxruntime, numpy, soundfile)")
    return 0
