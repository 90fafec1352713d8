"""Measurements of an artefact: size, parameters, latency, throughput, peak memory, energy, fidelity.

Choices that keep the numbers honest:

* Latency of several encoders is timed *interleaved* (A, B, C, A, B, C, ...), so background load
  on a shared machine hits all of them alike and their ratios stay meaningful. Thread counts are
  fixed and recorded.
* Peak RSS is measured in a fresh child process that only opens the artefact and embeds one clip,
  so it is not polluted by the torch model and other artefacts the parent holds.
* Energy comes from codecarbon's ``OfflineEmissionsTracker`` with an explicit country (the plain
  tracker guesses the region over the network and guesses wrong offline), writing nothing to the
  working directory. If codecarbon fails, energy is ``None`` with the reason, not a crash.
* Fidelity is measured on pooled per-layer embeddings of a fixed probe set against ONE reference,
  in ``serbench bench`` and ``serbench run`` alike: the reference recipe's ONNX artefact (method
  ``onnxruntime``/``fp32``, chosen by method, named in the output) of the same weights. It uses
  *centred* cosine: SSL embeddings share a large common offset that makes plain
  cosine ~0.999 even for a damaged model; subtracting the reference's probe-set mean (from both)
  leaves the part that distinguishes clips, which is what a downstream classifier uses.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from serbench.provenance import cpu_isa, cpu_model, isa_summary

CLIP_SECONDS = 8.0
PROBE_SEED, CALIBRATION_SEED = 0, 1


# ---- audio used for measuring ------------------------------------------------------------------


def clips(n: int, seed: int, seconds: float = CLIP_SECONDS) -> tuple[list[np.ndarray], list[str]]:
    """``n`` synthetic speech-like clips, preprocessed to exactly ``seconds``, and their ids.

    Seed :data:`PROBE_SEED` is the fixed fidelity probe set; :data:`CALIBRATION_SEED` is the
    calibration set ``serbench bench`` uses (disjoint from the probe set).
    """
    from serbench.audio import Preprocess
    from serbench.synth.voice import probe_clips

    prep = Preprocess(seconds=seconds)
    waves = [prep(w)[0] for w in probe_clips(n, seed=seed, seconds=seconds)]
    return waves, [f"synth.voice.probe_clips(seed={seed})[{i}]" for i in range(n)]


# ---- static facts ------------------------------------------------------------------------------


def machine() -> dict:
    import platform

    import psutil

    return {"cpu": cpu_model() or platform.machine(), "logical_cores": psutil.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "isa": cpu_isa(), "isa_summary": isa_summary()}


def kernels(encoder) -> dict:
    """Which kernels an opened encoder runs, where it says (``inc-int8`` checks its int8 kernels
    against its graph and may fall back to the graph's arithmetic); ``{}`` where it does not."""
    out = {}
    if getattr(encoder, "kernels", None):
        out["kernels"] = encoder.kernels
    if getattr(encoder, "kernel_check", None):
        out["kernel_check"] = encoder.kernel_check
    return out


def kernel_flags(encoder) -> list[str]:
    """``["INT8-KERNELS-FAILED-CHECK"]`` when the encoder runs a fallback instead of its int8
    kernels: its latency is then not the int8 kernels' and must not be read as theirs."""
    return ["INT8-KERNELS-FAILED-CHECK"] if str(getattr(encoder, "kernels", "")).startswith("reference") else []


# ---- latency -----------------------------------------------------------------------------------


def latency(fns: dict[str, Callable[[], object]], runs: int = 20, warmup: int = 3) -> dict[str, dict]:
    """Interleaved timing of several zero-argument callables: ``{name: {p50_ms, p90_ms, ...}}``."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: {"p50_ms": round(float(np.percentile(t, 50)) * 1e3, 2),
                   "p90_ms": round(float(np.percentile(t, 90)) * 1e3, 2),
                   "mean_ms": round(float(np.mean(t)) * 1e3, 2), "runs": runs, "warmup": warmup}
            for name, t in times.items()}


def throughput(lat: dict, clip_seconds: float = CLIP_SECONDS) -> float:
    """Audio seconds processed per wall-clock second at batch 1 (from the mean latency)."""
    return round(clip_seconds / (lat["mean_ms"] / 1e3), 2)


# ---- memory ------------------------------------------------------------------------------------


def peak_rss(target: str | Path, threads: int | None = None, seconds: float = CLIP_SECONDS,
             timeout: float = 900) -> dict:
    """Peak resident memory of a fresh process that opens an encoder and embeds one clip.

    ``target`` is an artefact folder, or the registry file (``.yaml``) of a weight-free model,
    whose encoder has no artefact (:func:`open_target`).
    """
    cmd = [sys.executable, "-m", "serbench.measure", "rss", str(target), "--seconds", str(seconds)]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        err = getattr(exc, "stderr", "") or ""
        return {"peak_rss_mb": None, "error": f"{type(exc).__name__}: {exc} {err[-500:]}".strip()}


def _peak_mb() -> float:
    """This process's high-water RSS. VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child
    started from a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_target(target: str | Path, threads: int | None = None):
    """The encoder of an artefact folder, or of a weight-free model given by its registry file."""
    from serbench import backbones, registry
    from serbench.artefacts import encoders

    if Path(target).suffix in (".yaml", ".yml"):
        entry = registry.load_model(str(target))
        return backbones.encoder(entry, backbones.build(entry)[0], threads)
    return encoders.open_encoder(target, threads)


def _rss_child(path: str, seconds: float, threads: int | None) -> None:
    import psutil

    base = psutil.Process().memory_info().rss / 2**20
    wave = (np.random.default_rng(0).standard_normal(int(seconds * 16_000)) * 0.1).astype(np.float32)
    open_target(path, threads).embed(wave)
    print(json.dumps({"peak_rss_mb": round(_peak_mb(), 1), "rss_before_open_mb": round(base, 1),
                      "method": "VmHWM of a fresh process that opens the artefact and embeds one clip"}))


# ---- energy ------------------------------------------------------------------------------------


def energy(fn: Callable[[], object], country: str = "USA", min_runs: int = 5,
           min_seconds: float = 5.0) -> dict:
    """Energy per call of ``fn`` (joules) from codecarbon, run until both minimums are met."""
    import logging

    result: dict = {"energy_j_per_clip": None, "country": country}
    try:
        import inspect

        from codecarbon import OfflineEmissionsTracker
        from codecarbon.emissions_tracker import BaseEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)  # after import: it sets its own level

        with tempfile.TemporaryDirectory() as tmp:
            # no outputs at all (newer codecarbon: output_methods=[]; older: save_to_file=False),
            # and a throwaway output_dir in case a version writes anyway
            quiet = ({"output_methods": []} if "output_methods" in inspect.signature(
                BaseEmissionsTracker.__init__).parameters else {"save_to_file": False})
            tracker = OfflineEmissionsTracker(country_iso_code=country, output_dir=tmp, log_level="error",
                                              measure_power_secs=1, tracking_mode="process",
                                              allow_multiple_runs=True, **quiet)
            tracker.start()
            runs, start = 0, time.perf_counter()
            try:
                while runs < min_runs or time.perf_counter() - start < min_seconds:
                    fn()
                    runs += 1
            finally:
                tracker.stop()
            data = tracker.final_emissions_data
        rapl = Path("/sys/class/powercap/intel-rapl").exists()
        result.update(energy_j_per_clip=round(data.energy_consumed * 3.6e6 / runs, 4), runs=runs,
                      cpu_power_w=round(data.cpu_power, 2), ram_power_w=round(data.ram_power, 2),
                      tracking_mode=data.tracking_mode, codecarbon=data.codecarbon_version,
                      source="RAPL" if rapl else "codecarbon estimate (no RAPL counters readable)")
    except Exception as exc:  # noqa: BLE001 - energy is optional; say why it is missing
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result


# ---- fidelity ----------------------------------------------------------------------------------


def fidelity(reference, candidate) -> dict:
    """Centred cosine and relative L2 of pooled embeddings, ``(clips, layers, dim)`` each.

    Both are centred on the *reference's* probe-set mean, so a constant shift in the candidate
    counts as error. Values are means over clips then layers; the worst layer is reported too.
    """
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.shape != got.shape or ref.ndim != 3:
        raise ValueError(f"fidelity needs two (clips, layers, dim) arrays of one shape, got {ref.shape}, {got.shape}")
    if ref.shape[0] < 2:
        raise ValueError("fidelity needs at least 2 probe clips (centring uses their mean)")
    mu = ref.mean(axis=0, keepdims=True)
    a, b = ref - mu, got - mu
    eps = 1e-12
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + eps)
    rel = np.linalg.norm(got - ref, axis=-1) / (np.linalg.norm(ref, axis=-1) + eps)
    per_cos, per_rel = cos.mean(axis=0), rel.mean(axis=0)
    return {"centered_cosine": round(float(per_cos.mean()), 5),
            "centered_cosine_worst_layer": round(float(per_cos.min()), 5),
            "rel_l2": round(float(per_rel.mean()), 5), "rel_l2_worst_layer": round(float(per_rel.max()), 5),
            "probe_clips": int(ref.shape[0]), "layers": int(ref.shape[1])}


def embed_all(encoder, waves: list[np.ndarray]) -> np.ndarray:
    return np.stack([encoder.embed(w) for w in waves])


# ---- for `serbench run` ------------------------------------------------------------------------


def flags(p50_ms: float, reference_p50_ms: float | None, cosine: float | None, min_fidelity: float = 0.95,
          slower_tolerance: float = 0.05) -> list[str]:
    """What a recipe is flagged for against the reference: ``SLOWER-THAN-FP32`` when its p50 exceeds
    the reference's by more than ``slower_tolerance``, ``LOW-FIDELITY`` when its centred cosine is
    below ``min_fidelity``. Decided here only, for ``serbench bench`` and ``serbench run``."""
    out = []
    if reference_p50_ms is not None and p50_ms > reference_p50_ms * (1 + slower_tolerance):
        out.append("SLOWER-THAN-FP32")
    if cosine is not None and cosine < min_fidelity:
        out.append("LOW-FIDELITY")
    return out


def for_run(entry, recipe, artefact, weights: dict | None = None, *, reference=None, runs: int = 20,
            probe: int = 8, country: str = "USA", threads: int | None = None, min_fidelity: float = 0.95,
            slower_tolerance: float = 0.05) -> dict:
    """Flat, JSON-able measurements of one recipe's encoder for the results store.

    ``artefact`` is the recipe's artefact, or None for a weight-free model (its encoder is used as
    built, size 0). ``reference`` is the reference recipe the run compares with (default: the
    registry's); ``reference`` in the output names it. When the reference's artefact of the same
    weights is in the cache (it is whenever the reference was among the recipes run), latency is
    timed interleaved with it and fidelity is measured against it, and ``flags`` (:func:`flags`)
    says what the recipe falls short in. Without it those fields are ``None`` and
    ``fidelity_reference`` says why. The reference itself (and a weight-free model, which runs
    under the reference alone) is its own reference. Fidelity is measured on ``probe`` synthetic
    clips, whatever data the run scored, and ``fidelity_probe`` says so (``serbench bench
    --probe-data`` measures it on real utterances: on trained Whisper tiny.en static-int8 measured
    0.849 here and 0.961 on 16 RAVDESS clips).
    """
    from serbench import registry, runtime
    from serbench.artefacts import cache, encoders

    reference = reference or registry.reference_recipe()
    threads = threads or runtime.default_threads()
    target = entry.path if artefact is None else artefact.path
    enc = open_target(target, threads)
    wave = clips(1, PROBE_SEED)[0][0]
    itself = artefact is None or recipe.name == reference.name
    ref, ref_path = None, None
    if not itself:
        prov = artefact.provenance.get("weights", weights or {})
        ref_path = cache.folder(entry, reference, cache.artefact_key(entry, reference, prov, []))
        if (ref_path / cache.META).is_file():
            ref = encoders.open_encoder(ref_path, threads)
    fns = {"x": lambda: enc.embed(wave)}
    if ref is not None:
        fns["reference"] = lambda: ref.embed(wave)
    timed = latency(fns, runs=runs)
    lat = timed["x"]
    out = {"size_mb": 0.0 if artefact is None else artefact.size_mb, "latency_p50_ms": lat["p50_ms"],
           "latency_p90_ms": lat["p90_ms"], "latency_runs": runs, "threads": threads, "clip_seconds": CLIP_SECONDS,
           "batch": 1, "throughput_audio_s_per_s": throughput(lat), "machine": machine(), "flags": kernel_flags(enc),
           "reference": reference.name, **kernels(enc)}
    out.update({f"memory_{k}": v for k, v in peak_rss(target, threads).items()})
    e = energy(lambda: enc.embed(wave), country=country)
    out.update({"energy_j_per_clip": e.pop("energy_j_per_clip"), "energy": e})
    if itself:
        out.update({"centered_cosine": 1.0, "rel_l2": 0.0, "speedup_vs_fp32": 1.0,
                    "fidelity_reference": f"itself ({recipe.name})"})
    elif ref is not None:
        waves = clips(probe, PROBE_SEED)[0]
        base = timed["reference"]["p50_ms"]
        out.update({**fidelity(embed_all(ref, waves), embed_all(enc, waves)), "fidelity_reference": str(ref_path),
                    "fidelity_probe": f"{probe} SYNTHETIC probe clips (seed {PROBE_SEED}), whatever the run's data",
                    "speedup_vs_fp32": round(base / lat["p50_ms"], 3)})
        out["flags"] = flags(lat["p50_ms"], base, out["centered_cosine"], min_fidelity, slower_tolerance) + out["flags"]
    else:
        out.update({"centered_cosine": None, "rel_l2": None, "speedup_vs_fp32": None,
                    "fidelity_reference": f"none: no {reference.name} artefact of the same weights in the cache"})
    return out


def _main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m serbench.measure")
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("rss", help="peak RSS of opening an artefact and embedding one clip")
    r.add_argument("path")
    r.add_argument("--seconds", type=float, default=CLIP_SECONDS)
    r.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    _rss_child(args.path, args.seconds, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
