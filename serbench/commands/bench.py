"""``serbench bench --model M --recipe R[,R...] [--weights W] [--json]``: measure recipes honestly.

For each recipe: artefact size, latency of one 8.0 s clip at batch 1 (p50/p90, interleaved with
the reference recipe's fp32 ONNX artefact measured in the same run), throughput, peak RSS, energy
per clip and fidelity against that artefact on a probe set. A recipe slower than fp32, or below
the fidelity threshold, is flagged. The probe set and the calibration clips are synthetic (two
disjoint seeds), or with ``--probe-data NAME=PATH`` real utterances of that corpus, probe and
calibration speakers disjoint (:mod:`serbench.probe_sets`); the output says which, and the
calibration ids are recorded.
"""
from __future__ import annotations

import json
import sys

from tabulate import tabulate

from serbench import corpora, fmt


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure size, latency, memory, energy and fidelity of recipes")
    p.add_argument("--model", required=True, help="model entry name (see `serbench models`)")
    p.add_argument("--recipe", required=True,
                   help="recipe name(s), comma-separated (see `serbench models --recipes`); fp32 is always "
                        "measured too, as the baseline")
    p.add_argument("--weights", default="hub", help="hub (default) | PATH | random[:SEED]")
    p.add_argument("--repeats", type=int, default=20, help="timed repetitions per recipe (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs (default 3)")
    p.add_argument("--threads", type=int, help="CPU threads for inference (default: all usable cores)")
    p.add_argument("--probe", type=int, default=16, help="fidelity probe clips (default 16)")
    p.add_argument("--calibration", type=int, default=32, help="calibration clips offered (default 32)")
    p.add_argument("--probe-data", metavar="NAME=PATH",
                   help=f"measure fidelity on real utterances of this corpus (NAME: {', '.join(corpora.RECIPES)}; "
                        "PATH in its distributed layout) and calibrate on other speakers of it")
    p.add_argument("--seed", type=int, default=0,
                   help="with --probe-data: seed of the speaker split and of the clips drawn (default 0)")
    p.add_argument("--country", default="USA", help="ISO-3 country for codecarbon's energy mix (default USA)")
    p.add_argument("--no-energy", action="store_true", help="skip the codecarbon energy measurement")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-memory child process")
    p.add_argument("--min-fidelity", type=float, default=0.95, help="flag centred cosine below this (0.95)")
    p.add_argument("--slower-tolerance", type=float, default=0.05,
                   help="flag a recipe whose p50 exceeds fp32's by more than this fraction (0.05)")
    p.add_argument("--quiet", action="store_true", help="no progress lines (the result is still printed)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def table(result: dict) -> str:
    out = []
    for r in result["rows"]:
        if "error" in r:
            out.append((r["recipe"], "-", "-", "-", "-", "-", "-", "-", "-", "-", "ERROR: " + r["error"][:80]))
            continue
        mem = (r.get("memory") or {}).get("peak_rss_mb")
        joules = (r.get("energy") or {}).get("energy_j_per_clip")
        fid = r["fidelity"]
        out.append((r["recipe"], fmt.num(r["size_mb"], ".1f", missing="-"), r.get("size_ratio_vs_fp32", "-"),
                    r["latency"]["p50_ms"], r["latency"]["p90_ms"], r.get("speedup_vs_fp32", "-"),
                    r["throughput_audio_s_per_s"], mem if mem is not None else "-",
                    joules if joules is not None else "-",
                    fmt.num(fid["centered_cosine"], ".4f", missing="-"), " ".join(r["flags"]) or "ok"))
    clip = f"{result.get('clip_seconds', 8):g} s clip"
    return tabulate(out, headers=["recipe", "MB", "size/fp32", f"p50 ms ({clip})", "p90 ms", "speed-up",
                                  "audio s/s", "peak RSS MB", "J/clip (estimate)", "centred cos", "flags"])


def run(args) -> int:
    from serbench import api

    recipes = [r.strip() for r in args.recipe.split(",") if r.strip()]
    result = api.bench(args.model, recipes, args.weights, repeats=args.repeats, warmup=args.warmup, threads=args.threads,
                       probe=args.probe, calibration=args.calibration, country=args.country,
                       energy=not args.no_energy, rss=not args.no_rss, min_fidelity=args.min_fidelity,
                       slower_tolerance=args.slower_tolerance, probe_data=args.probe_data, seed=args.seed,
                       log=(lambda m: None) if args.json or args.quiet else print).attrs["result"]
    for note in result["notes"]:   # skipped files: on stderr, so --json users see them too
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(f"\n{result['model']}{fmt.positions(result.get('positions'))}  weights: {result['weights_label']}  "
          f"threads: {result['threads']}  "
          f"clip: {result['clip_seconds']} s, batch 1")
    print(f"CPU: {result['machine']['isa_summary']}")
    for r in result["rows"]:
        if r.get("kernels"):
            print(f"{r['recipe']}: kernels {r['kernels']} (agreement with its graph: "
                  f"{r['kernel_check'].get('int8_agreement')})")
    if result["random_weights"]:
        print("NOTE: RANDOM-INIT weights: sizes and speeds are real, fidelity is of a random network")
    print(table(result))
    print(f"speed-up and size are ratios to the reference recipe {result['reference']!r}, timed interleaved in "
          f"this run; fidelity is against {result['fidelity_reference']}")
    print(result["probe"]["description"])
    return 0
