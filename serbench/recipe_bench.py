"""What ``serbench bench`` measures: every recipe of one model against the reference recipe's artefact.

The reference is the uncompressed ONNX export (method ``onnxruntime``/``fp32``): the first asked
recipe with that method, else the registry's (:func:`serbench.registry.reference_recipe`); the
result names it (``reference``). For each recipe: artefact size, latency of one 8.0 s clip at
batch 1 (p50/p90, interleaved with the reference's in the same run, so the ratios hold on a shared
machine), throughput, peak RSS, energy per clip and fidelity against the reference's embeddings of
a probe set (the one fidelity reference ``serbench run`` uses too). A recipe slower than the
reference, or below the fidelity threshold, is flagged (:func:`serbench.measure.flags`). The probe
set and the calibration clips come from :mod:`serbench.probe_sets`: synthetic clips of two
disjoint seeds by default, or with ``probe_data="NAME=PATH"`` real utterances of that corpus,
probe and calibration speakers disjoint; ``probe`` in the result says which, and the calibration
ids are recorded. Latency is always timed on the same synthetic 8.0 s clip, so speeds stay
comparable whatever the probe set. A weight-free model is measured under the reference recipe
alone, its encoder as built.
The command line (:mod:`serbench.commands.bench`) and :func:`serbench.api.bench` both call
:func:`bench`; this module holds no formatting.
"""
from __future__ import annotations

from contextlib import nullcontext

import time

from serbench import backbones, measure, probe_sets, progress, registry, runtime
from serbench.artefacts import cache, encoders
from serbench.errors import SerbenchError


def bench(model: str, recipes: list[str], weights: str = "hub", *, repeats: int = 20, warmup: int = 3,
          threads: int | None = None, probe: int = 16, calibration: int = 32, country: str = "USA",
          energy: bool = True, rss: bool = True, min_fidelity: float = 0.95,
          slower_tolerance: float = 0.05, probe_data: str | None = None, seed: int = 0,
          log=lambda msg: None) -> dict:
    """Measure ``recipes`` (plus the reference recipe) on ``model``; plain data out.

    ``probe_data`` (``"NAME=PATH"``, a corpus recipe's name and folder) measures fidelity on up to
    ``probe`` utterances of that corpus and calibrates on up to ``calibration`` utterances of other
    speakers, drawn with ``seed`` (:func:`serbench.probe_sets.from_corpus`); without it both are
    synthetic. ``notes`` in the result are what the user must be told (skipped files).
    """
    if probe < 2:
        raise SerbenchError("--probe must be at least 2 (centred cosine needs a mean)")
    entry = registry.load_model(model)
    asked = [registry.load_recipe(r) for r in dict.fromkeys(recipes)]
    ref = next((r for r in asked if r.is_reference), None) or registry.reference_recipe()
    recs = [ref] + [r for r in asked if r.name != ref.name]
    for r in recs:
        backbones.check_recipe(entry, r)
    offered = calibration if any(r.calibration for r in recs) else 0
    pset = probe_sets.choose(probe_data, entry, probe, offered, seed)
    threads = threads or runtime.default_threads()
    net, prov = backbones.build(entry, weights)
    log(f"{entry.name}: weights {backbones.describe(prov)}; {threads} threads; reference recipe {ref.name}")
    log(pset.description)
    probe_waves, probe_ids = pset.probe, pset.probe_ids
    cal_waves, cal_ids = pset.calibration, pset.calibration_ids
    rows, opened, embedded, targets = {}, {}, {}, {}
    for r in recs:
        row = rows[r.name] = {"recipe": r.name, "backend": r.backend, "method": r.method}
        try:
            start = time.perf_counter()
            if entry.weight_free:  # no artefact: the kind's encoder as built, sized 0
                enc = backbones.encoder(entry, net, threads)
                targets[r.name] = entry.path   # what the peak-memory child opens
                row.update(artefact=None, format=entry.kind, size_mb=0.0)
            else:
                art = cache.build(entry, r, (net, prov), cal_waves, cal_ids)
                enc = encoders.open_encoder(art, threads)
                targets[r.name] = art.path
                row.update(artefact=str(art.path), format=art.format, size_mb=art.size_mb)
            row.update(measure.kernels(enc))
            row.update(build_or_open_s=round(time.perf_counter() - start, 1),
                       calibration_ids=[] if entry.weight_free else art.provenance.get("calibration_ids", []))
            embedded[r.name] = measure.embed_all(enc, probe_waves)
            opened[r.name] = enc
            log(f"  {r.name}: built/opened in {row['build_or_open_s']} s, {row['size_mb']} MB")
        except SerbenchError as exc:
            if r is ref:
                raise SerbenchError(f"the reference recipe {ref.name!r} failed, so there is nothing to compare "
                                    f"with: {exc}") from exc
            row["error"] = str(exc)
            log(f"  {r.name}: FAILED: {exc}")
    clip = measure.clips(1, measure.PROBE_SEED)[0][0]   # the synthetic probe set's first clip
    log(f"timing {len(opened)} encoders interleaved: {warmup} warm-up + {repeats} repeats each")
    with progress.step(f"timing {len(opened)} encoders"):
        timings = measure.latency({n: (lambda e=e: e.embed(clip)) for n, e in opened.items()}, repeats, warmup)
    base = timings[ref.name]
    for name, enc in opened.items():
        row, lat = rows[name], timings[name]
        row["fidelity"] = measure.fidelity(embedded[ref.name], embedded[name])
        row.update(latency=lat, throughput_audio_s_per_s=measure.throughput(lat),
                   speedup_vs_fp32=round(base["p50_ms"] / lat["p50_ms"], 3),
                   size_ratio_vs_fp32=(round(row["size_mb"] / rows[ref.name]["size_mb"], 3)
                                       if rows[ref.name]["size_mb"] else None))
        with progress.step(f"{name}: energy and peak memory") if energy or rss else nullcontext():
            if energy:
                row["energy"] = measure.energy(lambda e=enc: e.embed(clip), country=country)
            if rss:
                row["memory"] = measure.peak_rss(targets[name], threads)
        row["flags"] = measure.flags(lat["p50_ms"], base["p50_ms"], row["fidelity"]["centered_cosine"],
                                     min_fidelity, slower_tolerance) + measure.kernel_flags(enc)
    return {"model": entry.name, "positions": entry.positions, "weights": prov, "weights_label": backbones.describe(prov),
            "random_weights": backbones.is_random(prov), "threads": threads, "machine": measure.machine(),
            "clip_seconds": measure.CLIP_SECONDS, "batch": 1, "min_fidelity": min_fidelity,
            "reference": ref.name,
            "fidelity_reference": (f"{ref.name}: the weight-free encoder as built, no artefact" if entry.weight_free
                                   else f"the {ref.name} ONNX artefact ({ref.backend}/{ref.method})"),
            "probe": pset.source, "probe_ids": probe_ids, "calibration_offered": len(cal_ids),
            "notes": list(pset.notes), "rows": [rows[r.name] for r in recs]}
