"""``serbench bench --model M --recipe R[,R...] [--weights W] [--json]``: measure recipes honestly.

For each recipe: artefact size, latency of one 8.0 s clip at batch 1 (p50/p90, interleaved with
the fp32 ONNX baseline measured in the same run), throughput, peak RSS, energy per clip and
fidelity against the fp32 torch model on a fixed probe set. A recipe slower than fp32, or below
the fidelity threshold, is flagged. Calibrated recipes calibrate on synthetic clips of a seed
disjoint from the probe set, and the clip ids are recorded.
"""
from __future__ import annotations

import json
import time

from tabulate import tabulate

from serbench import backbones, compress, measure, registry
from serbench.errors import SerbenchError


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure size, latency, memory, energy and fidelity of recipes")
    p.add_argument("--model", required=True, help="model entry name (see `serbench models`)")
    p.add_argument("--recipe", required=True,
                   help="recipe name(s), comma-separated (see `serbench models --recipes`); fp32 is always "
                        "measured too, as the baseline")
    p.add_argument("--weights", default="hub", help="hub (default) | PATH | random[:SEED]")
    p.add_argument("--runs", type=int, default=20, help="timed runs per recipe (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs (default 3)")
    p.add_argument("--threads", type=int, help="CPU threads for inference (default: all usable cores)")
    p.add_argument("--probe", type=int, default=16, help="fidelity probe clips (default 16)")
    p.add_argument("--calibration", type=int, default=32, help="calibration clips offered (default 32)")
    p.add_argument("--country", default="USA", help="ISO-3 country for codecarbon's energy mix (default USA)")
    p.add_argument("--no-energy", action="store_true", help="skip the codecarbon energy measurement")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-memory child process")
    p.add_argument("--min-fidelity", type=float, default=0.95, help="flag centred cosine below this (0.95)")
    p.add_argument("--slower-tolerance", type=float, default=0.05,
                   help="flag a recipe whose p50 exceeds fp32's by more than this fraction (0.05)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def bench(model: str, recipes: list[str], weights: str = "hub", *, runs: int = 20, warmup: int = 3,
          threads: int | None = None, probe: int = 16, calibration: int = 32, country: str = "USA",
          energy: bool = True, rss: bool = True, min_fidelity: float = 0.95,
          slower_tolerance: float = 0.05, log=lambda msg: None) -> dict:
    """Measure ``recipes`` (plus the fp32 baseline) on ``model``; plain data out."""
    if probe < 2:
        raise SerbenchError("--probe must be at least 2 (centred cosine needs a mean)")
    entry = registry.load_model(model)
    names = ["fp32"] + [r for r in dict.fromkeys(recipes) if r != "fp32"]
    recs = [registry.load_recipe(r) for r in names]
    threads = threads or compress.default_threads()
    net, prov = backbones.build(entry, weights)
    log(f"{entry.name}: weights {backbones.describe(prov)}; {threads} threads")
    probe_waves, probe_ids = measure.clips(probe, measure.PROBE_SEED)
    cal_waves, cal_ids = (measure.clips(calibration, measure.CALIBRATION_SEED)
                          if any(r.calibration for r in recs) else ([], []))
    reference = measure.embed_all(backbones.encoder(entry, net, threads), probe_waves)
    rows, encoders = {}, {}
    for r in recs:
        row = rows[r.name] = {"recipe": r.name, "backend": r.backend, "method": r.method}
        try:
            start = time.perf_counter()
            art = compress.build(entry, r, (net, prov), cal_waves, cal_ids)
            enc = compress.open_encoder(art, threads)
            row.update(artefact=str(art.path), format=art.format, size_mb=art.size_mb,
                       build_or_open_s=round(time.perf_counter() - start, 1),
                       calibration_ids=art.provenance.get("calibration_ids", []))
            row["fidelity"] = measure.fidelity(reference, measure.embed_all(enc, probe_waves))
            encoders[r.name] = enc
            log(f"  {r.name}: built/opened in {row['build_or_open_s']} s, {art.size_mb} MB")
        except SerbenchError as exc:
            row["error"] = str(exc)
            log(f"  {r.name}: FAILED: {exc}")
    clip = probe_waves[0]
    log(f"timing {len(encoders)} encoders interleaved: {warmup} warm-up + {runs} runs each")
    timings = measure.latency({n: (lambda e=e: e.embed(clip)) for n, e in encoders.items()}, runs, warmup)
    base = timings.get("fp32")
    for name, enc in encoders.items():
        row, lat = rows[name], timings[name]
        row.update(latency=lat, throughput_audio_s_per_s=measure.throughput(lat))
        if base:
            row["speedup_vs_fp32"] = round(base["p50_ms"] / lat["p50_ms"], 3)
            row["size_ratio_vs_fp32"] = (round(row["size_mb"] / rows["fp32"]["size_mb"], 3)
                                         if rows["fp32"].get("size_mb") else None)
        if energy:
            row["energy"] = measure.energy(lambda e=enc: e.embed(clip), country=country)
        if rss:
            row["memory"] = measure.peak_rss(row["artefact"], threads)
        flags = []
        if base and lat["p50_ms"] > base["p50_ms"] * (1 + slower_tolerance):
            flags.append("SLOWER-THAN-FP32")
        if row["fidelity"]["centered_cosine"] < min_fidelity:
            flags.append("LOW-FIDELITY")
        row["flags"] = flags
    return {"model": entry.name, "weights": prov, "weights_label": backbones.describe(prov),
            "random_weights": backbones.is_random(prov), "threads": threads, "machine": measure.machine(),
            "clip_seconds": measure.CLIP_SECONDS, "batch": 1, "min_fidelity": min_fidelity,
            "fidelity_reference": "fp32 torch model", "probe_ids": probe_ids,
            "calibration_offered": len(cal_ids), "rows": [rows[n] for n in names]}


def table(result: dict) -> str:
    out = []
    for r in result["rows"]:
        if "error" in r:
            out.append((r["recipe"], "-", "-", "-", "-", "-", "-", "-", "-", "-", "ERROR: " + r["error"][:80]))
            continue
        mem = (r.get("memory") or {}).get("peak_rss_mb")
        joules = (r.get("energy") or {}).get("energy_j_per_clip")
        fid = r["fidelity"]
        out.append((r["recipe"], f"{r['size_mb']:.1f}", r.get("size_ratio_vs_fp32", "-"),
                    r["latency"]["p50_ms"], r["latency"]["p90_ms"], r.get("speedup_vs_fp32", "-"),
                    r["throughput_audio_s_per_s"], mem if mem is not None else "-",
                    joules if joules is not None else "-",
                    f"{fid['centered_cosine']:.4f}", " ".join(r["flags"]) or "ok"))
    return tabulate(out, headers=["recipe", "MB", "size/fp32", "p50 ms", "p90 ms", "speed-up", "audio s/s",
                                  "peak RSS MB", "J/clip", "centred cos", "flags"])


def run(args) -> int:
    recipes = [r.strip() for r in args.recipe.split(",") if r.strip()]
    result = bench(args.model, recipes, args.weights, runs=args.runs, warmup=args.warmup, threads=args.threads,
                   probe=args.probe, calibration=args.calibration, country=args.country,
                   energy=not args.no_energy, rss=not args.no_rss, min_fidelity=args.min_fidelity,
                   slower_tolerance=args.slower_tolerance,
                   log=(lambda m: None) if args.json else print)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(f"\n{result['model']}  weights: {result['weights_label']}  threads: {result['threads']}  "
          f"CPU: {result['machine']['cpu']}  clip: {result['clip_seconds']} s, batch 1")
    if result["random_weights"]:
        print("NOTE: RANDOM-INIT weights: sizes and speeds are real, fidelity is of a random network")
    print(table(result))
    print(f"speed-up and size are ratios to the fp32 ONNX artefact timed in this run (interleaved); "
          f"fidelity is against the fp32 torch model on {len(result['probe_ids'])} probe clips")
    return 0
