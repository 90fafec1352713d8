"""What ``serbench bench`` measures: every recipe of one model against its fp32 ONNX artefact.

For each recipe: artefact size, latency of one 8.0 s clip at batch 1 (p50/p90, interleaved with
the fp32 ONNX baseline measured in the same run, so the ratios hold on a shared machine),
throughput, peak RSS, energy per clip and fidelity against the fp32 torch model on a fixed probe
set. A recipe slower than fp32, or below the fidelity threshold, is flagged. Calibrated recipes
calibrate on synthetic clips of a seed disjoint from the probe set, and the clip ids are recorded.
The command line (:mod:`serbench.commands.bench`) and :func:`serbench.api.bench` both call
:func:`bench`; this module holds no formatting.
"""
from __future__ import annotations

import time

from serbench import backbones, compress, measure, registry
from serbench.errors import SerbenchError


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
