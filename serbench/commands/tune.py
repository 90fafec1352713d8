"""``serbench tune --model M --recipe R (--min-fidelity F | --metric ua --protocol P --max-ua-drop D
(--data NAME=PATH | --synthetic)) [--weights W] [--out FILE] [--name NAME]``: keep the most sensitive
node groups of a quantised recipe in float until it reaches the target, and write that as a new
recipe file (:func:`serbench.mixed_precision.tune` does the work; this module parses and prints).
"""
from __future__ import annotations

import json

from tabulate import tabulate

from serbench import fmt


def register(sub) -> None:
    p = sub.add_parser("tune", help="write a mixed-precision recipe: a quantised recipe with its most sensitive "
                                    "node groups kept in float, to reach --min-fidelity (centred cosine) or, "
                                    "with --metric ua, --max-ua-drop (validation UA under --protocol)")
    p.add_argument("--model", required=True, help="model entry name (see `serbench models`)")
    p.add_argument("--recipe", required=True, help="the quantised recipe to start from (one whose method has "
                                                   "nodes_to_exclude, e.g. static-int8)")
    p.add_argument("--metric", default="fidelity", choices=["fidelity", "ua"],
                   help="fidelity (default): centred cosine against the reference recipe on a probe set; ua: "
                        "UA on the validation folds of --protocol, paired with the reference, as `serbench run` "
                        "scores it (never a test utterance)")
    p.add_argument("--min-fidelity", type=float,
                   help="--metric fidelity: target centred cosine against the reference recipe's ONNX artefact, "
                        "in (0, 1]")
    p.add_argument("--max-ua-drop", type=float, metavar="POINTS",
                   help="--metric ua: points of validation UA the tuned recipe may lose to the reference, "
                        "e.g. 1.0")
    p.add_argument("--protocol", help="--metric ua: the protocol whose validation folds score each candidate "
                                      "(`serbench list protocols`, or a YAML path)")
    p.add_argument("--data", action="append", metavar="NAME=PATH",
                   help="--metric ua: corpus folder (repeatable), as for `serbench run`")
    p.add_argument("--synthetic", action="store_true", help="--metric ua: the built-in synthetic corpora")
    p.add_argument("--synthetic-size", default="small", choices=["tiny", "small", "medium"])
    p.add_argument("--weights", default="hub", help="hub (default) | PATH | random[:SEED]")
    p.add_argument("--name", help="the new recipe's name (default MODEL-RECIPE-minF, or MODEL-RECIPE-uaD)")
    p.add_argument("--out", help="write the recipe here (default: $SERBENCH_HOME/registry/recipes/NAME.yaml, "
                                 "where serbench finds it by name)")
    p.add_argument("--force", action="store_true", help="replace an existing file / shadow a recipe of that name")
    p.add_argument("--probe", type=int, help="--metric fidelity: probe clips (default 16, as bench)")
    p.add_argument("--calibration", type=int, default=32,
                   help="calibration clips offered (default 32, as bench and run; --metric ua: per fold, from its "
                        "training utterances)")
    p.add_argument("--probe-data", metavar="NAME=PATH",
                   help="--metric fidelity: measure fidelity on utterances of this corpus, calibrate on other "
                        "speakers (as bench)")
    p.add_argument("--seed", type=int, help="seed of the --probe-data speaker split (default 0), or with "
                                            "--metric ua of the protocol's folds (default: the protocol's)")
    p.add_argument("--repeats", type=int, default=10,
                   help="timed repetitions for the latency of the result (default 10)")
    p.add_argument("--threads", type=int, help="CPU threads for inference (default: all usable cores)")
    p.add_argument("--quiet", action="store_true", help="no progress lines (the result is still printed)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _score(m: dict, metric: str) -> str:
    if metric == "fidelity":
        return f"{m['fidelity']:.5f}"
    return fmt.ci(m["delta_ua"]["delta"], m["delta_ua"]["low"], m["delta_ua"]["high"], spec="+.1f")


def table(result: dict) -> str:
    from serbench.mixed_precision import ranked

    metric = result["metric"]
    rows = [(("*" if s["group"] in result["chosen"] else ""), s["group"], len(s["nodes"]), _score(s, metric),
             f"{s['fidelity']:.5f}") for s in ranked(result["groups"])]
    heads = ["float", "node group", "nodes", "cos if only it is float"] if metric == "fidelity" else \
        ["float", "node group", "nodes", "val ΔUA if only it is float", "val cos"]
    return tabulate([r[:len(heads)] for r in rows], headers=heads)


def run(args) -> int:
    from serbench import sources
    from serbench.api import tune

    result = tune(args.model, args.recipe, args.min_fidelity, args.weights, metric=args.metric,
                  max_ua_drop=args.max_ua_drop, protocol=args.protocol,
                  data=sources.parse_data_args(args.data) if args.data else None, synthetic=args.synthetic,
                  synthetic_size=args.synthetic_size, name=args.name, out=args.out,
                  force=args.force, probe=args.probe, calibration=args.calibration, probe_data=args.probe_data,
                  seed=args.seed, repeats=args.repeats,
                  threads=args.threads, log=(lambda m: None) if args.json or args.quiet else print)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    metric, on = result["metric"], result["measured_on"]
    for note in result["notes"]:
        print(f"note: {note}")
    if result["random_weights"]:
        print("NOTE: RANDOM-INIT weights: the sensitivities are of a random network")
    if result["groups"]:
        print("\n" + table(result) + "\n")
    else:
        print(f"\n{result['recipe']} already meets {result['target']['text']} "
              f"({_score(result['base'], metric)}): nothing kept float\n")
    b, f = result["base"], result["final"]
    rows, heads = [], ["recipe", "centred cos", "MB", "p50 ms", "speed-up"]
    if metric == "ua":
        heads[1:1] = ["val UA", "val ΔUA [95% CI]", "McNemar p"]
    for label, m in ((result["recipe"], b), (result["name"], f)):
        row = [label, f"{m['fidelity']:.5f}", f"{m['size_mb']:.1f}", m["latency_p50_ms"], m["speedup_vs_fp32"]]
        if metric == "ua":
            row[1:1] = [f"{100 * m['ua']:.1f}", _score(m, metric), fmt.p_value(m["mcnemar_p"])]
        rows.append(row)
    print(tabulate(rows, headers=heads, disable_numparse=True))
    against = (f"fidelity against its ONNX artefact ({on['description']})" if metric == "fidelity" else
               f"scored on {on['description']}; the interval is speaker-clustered, paired with "
               f"{result['reference']}. Validation is where heads were chosen: `serbench run` on the test "
               "splits is the honest measure")
    print(f"\nspeed-up is to {result['reference']!r}, timed interleaved in this run; {against}. "
          f"{len(result['chosen'])} of {len(result['groups']) or 'the'} groups kept float "
          f"({len(result['float_nodes'])} nodes).")
    use = result["name"] if args.out is None else result["path"]
    print(f"wrote {result['path']}: use it as `--recipe {use}` (serbench run, serbench bench)")
    return 0
