"""``serbench run --model M --protocol P``: train, compress, evaluate, store; print a table."""
from __future__ import annotations

import json
import sys

from tabulate import tabulate


def register(sub) -> None:
    p = sub.add_parser("run", help="evaluate a model under a protocol, for one or more compression recipes")
    p.add_argument("--model", required=True, help="registry model entry (`serbench list models`)")
    p.add_argument("--protocol", required=True, help="protocol name (`serbench list protocols`) or YAML path")
    p.add_argument("--recipe", default="fp32",
                   help="comma-separated recipes, e.g. fp32,dynamic-int8,static-int8 (default fp32)")
    p.add_argument("--mode", choices=["probe", "finetune"], default="probe",
                   help="probe: frozen backbone + trained head (default); finetune: the paper's recipe")
    p.add_argument("--weights", default="hub",
                   help="hub (default) | PATH (save_pretrained folder or checkpoint) | random[:SEED]")
    p.add_argument("--data", action="append", metavar="NAME=PATH",
                   help="corpus folder, e.g. --data iemocap=/data/IEMOCAP_full_release (repeatable)")
    p.add_argument("--synthetic", action="store_true",
                   help="use the built-in synthetic corpora (results are tagged synthetic)")
    p.add_argument("--synthetic-size", default="small", choices=["tiny", "small", "medium"])
    p.add_argument("--corpus", help="apply a within-corpus protocol to this corpus instead of its own")
    p.add_argument("--label-map", action="append", metavar="CORPUS=MAP",
                   help="label map for a corpus, e.g. --label-map ravdess=ravdess-8class (repeatable; "
                        "`serbench list labelmaps`)")
    p.add_argument("--head", help="registry head: mlp | logreg | svm-linear | ... (default: the model "
                                  "entry's, else mlp); probe mode only")
    p.add_argument("--seed", type=int, default=None, help="split and training seed (default: the protocol's)")
    p.add_argument("--epochs", type=int, help="fine-tune epochs (default 25, the paper's)")
    p.add_argument("--no-measure", action="store_true", help="skip latency/memory/energy measurement")
    p.add_argument("--resume", action="store_true", help="continue the unfinished run with this configuration")
    p.add_argument("--store", help="results database (default $SERBENCH_HOME/results.sqlite)")
    p.add_argument("--margin", type=float, metavar="POINTS",
                   help="equivalence margin of the verdicts vs fp32, in UA points (default 1.0)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars or fold log")
    p.set_defaults(func=run)


def run(args) -> int:
    from serbench import api, fmt, sources

    quiet = args.quiet or args.json
    df = api.run(
        args.model, args.protocol, tuple(r.strip() for r in args.recipe.split(",") if r.strip()),
        store=args.store, resume=args.resume, progress=not quiet, log=None if quiet else print,
        mode=args.mode, weights=args.weights, corpus=args.corpus, head=args.head,
        label_maps=parse_label_maps(args.label_map),
        data=sources.parse_data_args(args.data), synthetic=args.synthetic,
        synthetic_size=args.synthetic_size, seed=args.seed, measure=not args.no_measure,
        epochs=args.epochs,   # None: the trainer's default; 0 or less is refused, not replaced
        margin=args.margin,
    )
    for note in df.attrs["notes"]:
        print(f"note: {note}", file=sys.stderr)
    rows = df.attrs["runs"]
    if args.json:
        print(json.dumps({"runs": rows}, indent=2, default=str))
        return 0
    interval = lambda s: fmt.ci(s["value"], s["low"], s["high"], missing="-")  # noqa: E731
    table = [[r["run_id"], r["recipe"], fmt.num(r["size_mb"], ".1f", missing="-"),
              fmt.num(r["latency_p50_ms"], ".0f", missing="-"), interval(r["ci"]["ua"]),
              fmt.mean_std(r["ua"]["mean"], r["ua"]["std"], missing="-"), interval(r["ci"]["wa"]),
              interval(r["ci"]["macro_f1"]),
              ", ".join(r["flags"])] for r in rows]
    print()
    print(df.attrs["title"])
    print(tabulate(table, headers=["run", "recipe", "size MB", "latency ms", "UA % [95% CI]", "UA folds",
                                   "WA % [95% CI]", "macro-F1 % [95% CI]", "flags"], disable_numparse=True))
    timed = [r for r in rows if r.get("latency_measured_on")]
    for machine in sorted({r["latency_measured_on"] for r in timed}):   # one line: a run is timed on one machine
        clip = next(r["latency_clip_s"] for r in timed if r["latency_measured_on"] == machine)
        print(f"latency: p50 of one {clip:g} s clip at batch 1, measured on {machine}")
    ci = rows[0]["ci"]
    print(f"intervals: {100 * ci['confidence']:.0f} % bootstrap over the {ci['clusters']} test speakers "
          f"(pooled predictions of all folds; {ci['n_resamples']} resamples, seed {ci['seed']}); "
          "UA folds: mean ± std over folds")
    paired = [r for r in rows if r["paired"]]
    if paired:
        ref = paired[0]["paired"]["reference_recipe"]
        print(f"\ncompressed vs {ref} (same folds, heads and test utterances):")
        margin = df.attrs["margin"]
        print(tabulate([[r["run_id"], r["recipe"],
                         fmt.ci(r["paired"]["ua"]["delta"], r["paired"]["ua"]["low"], r["paired"]["ua"]["high"],
                                spec="+.1f"),
                         fmt.num(_mdd(r["paired"]), ".1f"),
                         fmt.p_value(r["paired"]["ua"]["p_value"]), fmt.p_value(r["paired"]["mcnemar"]["p_value"]),
                         fmt.pct(r["paired"]["agreement"]), api.verdict(r["paired"], margin)] for r in paired],
                       headers=["run", "recipe", "ΔUA points [95% CI]", "MDD points", "p (bootstrap)", "McNemar p",
                                "agreement %", "verdict"], disable_numparse=True))
        for r in paired:
            why = fmt.resolution(r["paired"], margin)
            if why:
                print(f"run {r['run_id']} ({r['recipe']}): {why}")
        print(f"MDD: minimum detectable ΔUA (80 % power at the 95 % level, from the speaker bootstrap); "
              f"equivalent: the whole interval inside ±{margin:.1f} points (--margin)")
    worst = ", ".join(f"{w['speaker']} {100 * w['ua']:.0f} %" for w in rows[0]["worst_speakers"])
    print(f"lowest-UA test speakers ({rows[0]['recipe']}): {worst}")
    shared = rows[0]["shared_speakers_train_test"]
    print(f"speakers shared by train and test, per fold: {shared}")
    for r in rows:
        print(f"run id: {r['run_id']}")
    store = f" --store {args.store}" if args.store else ""
    print(f"next: serbench compare --runs {','.join(str(r['run_id']) for r in rows)}{store} --out reports/NAME")
    return 0


def _mdd(paired: dict):
    mdd = (paired.get("ua") or {}).get("mdd")
    return None if mdd is None else 100 * mdd


def parse_label_maps(items: list[str] | None) -> dict[str, str]:
    """``["ravdess=ravdess-8class", ...]`` -> ``{"ravdess": "ravdess-8class"}``."""
    from serbench.errors import SerbenchError

    out = {}
    for item in items or []:
        corpus, sep, name = (part.strip() for part in item.partition("="))
        if not sep or not corpus or not name:
            raise SerbenchError(f"--label-map wants CORPUS=MAP (e.g. ravdess=ravdess-8class), got {item!r}")
        out[corpus] = name
    return out

