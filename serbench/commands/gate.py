"""``serbench gate --baseline FILE``: compare the latest runs with a committed baseline (CI)."""
from __future__ import annotations

import json

from tabulate import tabulate


def register(sub) -> None:
    p = sub.add_parser(
        "gate", help="fail (exit 1) when the latest runs regress against a baseline on UA or UA per MB",
        description="Compares the latest finished run per (model, recipe, protocol) with the baseline "
                    "file on UA and accuracy per MB (UA / size MB). Exit 0: no regression beyond the "
                    "tolerance; 1: a regression, a baseline entry without a current run, or an entry "
                    "whose data or weights kind changed; 2: bad input.")
    p.add_argument("--baseline", required=True, help="baseline JSON, e.g. reports/baseline.json")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="allowed drop, default 0.01: ABSOLUTE on UA (0.01 = 1 point) and RELATIVE on "
                        "UA per MB (0.01 = 1%%); the two options below override one each")
    p.add_argument("--ua-tolerance", type=float, help="allowed absolute UA drop (overrides --tolerance)")
    p.add_argument("--acc-per-mb-tolerance", type=float,
                   help="allowed relative UA-per-MB drop (overrides --tolerance)")
    p.add_argument("--allow-missing", action="store_true",
                   help="do not fail on baseline entries that have no finished run in the store")
    p.add_argument("--paired", action="store_true",
                   help="fail on UA only when the 95%% speaker-bootstrap interval of the difference (current "
                        "vs baseline predictions, utterance by utterance) lies below -tolerance")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for --paired (default 1000)")
    p.add_argument("--update", action="store_true",
                   help="write the current runs as the new baseline instead of comparing (exit 0)")
    p.add_argument("--store", help="results database (default $SERBENCH_HOME/results.sqlite)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON (exit status as without)")
    p.set_defaults(func=run)


def run(args) -> int:
    from serbench import gate, provenance, runtable, store

    path = args.store or store.default_path()
    tol = gate.Tolerance(ua=args.tolerance if args.ua_tolerance is None else args.ua_tolerance,
                         acc_per_mb=args.tolerance if args.acc_per_mb_tolerance is None else args.acc_per_mb_tolerance)
    with runtable.open_store(path) as db:
        current = gate.current_entries(db)
    if args.update:
        written = gate.write_baseline(args.baseline, current, path)
        print(f"baseline written: {written} ({len(current)} entries from {path})")
        for name, e in sorted(current.items()):
            apm = "n/a" if e["acc_per_mb"] is None else f"{e['acc_per_mb']:.4g}"
            print(f"  {name}: UA {e['ua']:.4f}, UA/MB {apm}, run {e['run_id']}, {e['data']}, {e['weights']}")
        return 0
    baseline = gate.load_baseline(args.baseline)
    outcome = gate.compare(baseline, current, tol, allow_missing=args.allow_missing, paired=args.paired,
                           n_resamples=args.resamples)
    if args.json:
        print(json.dumps({"passed": outcome.passed, "rows": outcome.rows, "failures": outcome.failures,
                          "baseline": str(args.baseline), "store": str(path), "machine": provenance.isa_summary(),
                          "tolerance": {"ua": tol.ua, "acc_per_mb": tol.acc_per_mb}, "paired": args.paired},
                         indent=2, default=str))
        return 0 if outcome.passed else 1
    print(f"gate: {len(baseline)} baseline entries ({args.baseline}) vs the latest runs in {path}")
    print(f"machine: {provenance.isa_summary()}")
    print(f"tolerance: UA may drop {tol.ua:.4f} (absolute"
          + ("; paired: fails only when the whole 95% speaker interval of the drop is beyond it" if args.paired else "")
          + f"); UA per MB may drop {100 * tol.acc_per_mb:.2f}% (relative"
          + ("; paired: at the top of the UA interval, the size being exact" if args.paired else "") + ")")
    print(tabulate(outcome.rows, headers="keys", disable_numparse=True))
    if outcome.passed:
        print("gate: PASSED")
        return 0
    print(f"gate: FAILED ({len(outcome.failures)}):")
    for line in outcome.failures:
        print(f"  {line}")
    return 1
