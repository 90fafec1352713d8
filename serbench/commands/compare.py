"""``serbench compare``: write one report (HTML, Markdown, CSV, plots) from the results store."""
from __future__ import annotations

import json
from pathlib import Path

from serbench.errors import SerbenchError


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="report on stored runs: Pareto fronts, intervals, compressed vs fp32, speakers, "
                        "leakage, cross-corpus, confusion; HTML/MD/CSV",
        description="Reads the results store and writes index.html (self-contained, opens offline), "
                    "report.md, runs.csv, paired.csv, speakers.csv, leakage.csv, cross_corpus.csv and "
                    "plots/*.png|svg.")
    p.add_argument("--runs", help="comma-separated run ids (default: the latest finished run per model, "
                                  "recipe, protocol, mode, synthetic-or-real data, label map and head)")
    p.add_argument("--out", help="report folder (default: reports/<timestamp> under the current directory); "
                                 "it must be new, empty or a previous serbench report, unless --force")
    p.add_argument("--force", action="store_true",
                   help="write into --out even if it holds other files (files of the same names are replaced)")
    p.add_argument("--store", help="results database (default $SERBENCH_HOME/results.sqlite)")
    p.add_argument("--json", action="store_true",
                   help="print the report's tables as JSON (runs, paired, speakers, leakage, cross) and the files")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors (the report is still written)")
    p.add_argument("--margin", type=float, metavar="POINTS",
                   help="equivalence margin of the verdicts vs fp32, in UA points (default 1.0)")
    p.set_defaults(func=run)


def parse_ids(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise SerbenchError(f"--runs must be comma-separated run ids, e.g. 3,4,7 (got {text!r})") from exc


def run(args) -> int:
    from serbench import api, report

    out = Path(args.out) if args.out else report.default_out()
    rep = api.compare(args.store, parse_ids(args.runs), out=out, force=args.force, margin=args.margin)
    if args.json:
        tables = {k: json.loads(getattr(rep, k).to_json(orient="records", default_handler=str))
                  for k in ("runs", "paired", "speakers", "leakage", "cross")}
        print(json.dumps({**tables, "files": [str(p) for p in rep.files], "out": str(out)}, indent=2, default=str))
        return 0
    if args.quiet:
        return 0
    print(f"report on {len(rep.runs)} run(s) ({', '.join(map(str, rep.runs['run_id']))}) written to {out}:")
    for path in rep.files:
        print(f"  {path}")
    return 0
