"""Real-time factor of ``serbench infer`` on a 10-minute voice note (2 cores by default).

    python benchmarks/voice_note.py [--minutes 10] [--threads 2] [--recipes fp32,static-int8]

Trains (probe, production protocol, synthetic tiny corpus) and exports DistilHuBERT with
RANDOM-INIT weights (same architecture and cost as the pretrained one) for each recipe,
synthesises a note (48 kHz mono OGG/Vorbis, like a phone's voice note: several speakers'
utterances with pauses of background noise), and times the whole ``infer`` pass for each export
with and without VAD: decode -> resample -> VAD -> windows -> classify -> aggregate.
RTF here = audio seconds / wall seconds (higher is faster; 1 is real time). The model is loaded
before the clock starts (once per process in real use). The process's CPU time and the load
average are printed too: on a shared machine the wall-clock RTF depends on the other jobs.

Runs in its own SERBENCH_HOME (``--home``, default ``$SERBENCH_HOME/benchmarks/voice_note``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vad_notes import CLASSES, SR, make_note, note_speakers  # noqa: E402


def exports(args, home: Path) -> dict[str, Path]:
    import serbench

    recipes = tuple(r.strip() for r in args.recipes.split(","))
    out = {r: home / "exports" / f"{args.model}-{r}" for r in recipes}
    if all((p / "model_card.json").is_file() for p in out.values()):
        return out
    print(f"training + compressing: serbench run --model {args.model} --weights {args.weights} "
          f"--protocol production --synthetic --synthetic-size tiny --recipe {args.recipes}", flush=True)
    df = serbench.run(args.model, "production", recipes, weights=args.weights, synthetic=True,
                      synthetic_size="tiny", measure=False, home=home)
    for run_id, recipe in zip(df["run_id"], df["recipe"]):
        serbench.export(int(run_id), out[recipe], force=True, home=home)
    return out


def synth_note(path: Path, minutes: float, seed: int = 0) -> float:
    """A long note at 48 kHz, written block by block; returns its length in seconds."""
    import soxr

    rng = np.random.default_rng([seed, 600])
    speakers = note_speakers(8, seed + 1)
    with sf.SoundFile(str(path), "w", samplerate=48_000, channels=1, format="OGG", subtype="VORBIS") as f:
        total = 0.0
        i = 0
        while total < minutes * 60:  # one-minute pieces, one emotion and speaker each
            seconds = min(60.0, minutes * 60 - total)
            y, _, _ = make_note(CLASSES[i % 4], seconds, rng, speaker=speakers[i % len(speakers)],
                                pause=(0.5, 4.0))
            y = y[: int(seconds * SR)]
            x = soxr.resample(y, SR, 48_000).astype(np.float32)
            for i0 in range(0, x.size, 48_000):  # small writes: libvorbis overflows its stack on big ones
                f.write(x[i0:i0 + 48_000])
            total += y.size / SR
            i += 1
    return sf.info(str(path)).duration


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="distilhubert")
    ap.add_argument("--weights", default="random:0")
    ap.add_argument("--recipes", default="fp32,static-int8")
    ap.add_argument("--repeats", type=int, default=1, help="runs per configuration (the fastest is reported)")
    ap.add_argument("--home", help="SERBENCH_HOME for this benchmark")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from serbench import paths

    home = Path(args.home) if args.home else paths.home() / "benchmarks" / "voice_note"
    home.mkdir(parents=True, exist_ok=True)
    from serbench import provenance, runtime

    dirs = exports(args, home)
    note = home / f"note-{args.minutes:g}min.ogg"
    if not note.is_file():
        print(f"synthesising a {args.minutes:g}-minute note ...", flush=True)
        synth_note(note, args.minutes)
    duration = sf.info(str(note)).duration
    rows = []
    for recipe, d in dirs.items():
        model = runtime.EmotionModel(d, args.threads)
        vad = runtime.SileroVad(runtime.find_vad_model(d))
        for use_vad in (True, False):
            best = None
            for _ in range(args.repeats):
                stats = runtime.Stats()
                t, c = time.perf_counter(), time.process_time()
                r = runtime.analyse(note, model, runtime.Options(vad=use_vad), vad if use_vad else None, stats)
                wall, cpu = time.perf_counter() - t, time.process_time() - c
                if best is None or wall < best[0]:
                    best = (wall, stats, r, cpu)
            wall, stats, r, cpu = best
            card = json.loads((d / "model_card.json").read_text())
            rows.append({"recipe": recipe, "vad": use_vad, "audio_s": round(duration, 1), "wall_s": round(wall, 2),
                         "rtf": round(duration / wall, 1), "windows": r["windows"],
                         "cpu_s": round(cpu, 1), "rtf_per_cpu_second": round(duration / cpu, 1),
                         "load_average_1min": os.getloadavg()[0],
                         "vad_s": round(stats.vad_s, 2), "model_s": round(stats.model_s, 2),
                         "other_s": round(wall - stats.vad_s - stats.model_s, 2),
                         "model_mb": card["size"]["model_onnx_mb"], "status": r["status"]})
            print(f"{recipe:12s} VAD {'on ' if use_vad else 'off'}: {duration:.0f} s of audio in {wall:.1f} s "
                  f"-> {duration / wall:.1f}x real time ({r['windows']} windows; model {stats.model_s:.1f} s, "
                  f"VAD {stats.vad_s:.1f} s, decode+resample+rest {wall - stats.vad_s - stats.model_s:.1f} s; "
                  f"CPU time {cpu:.1f} s; load average {os.getloadavg()[0]:.1f})",
                  flush=True)
    info = {"cpu": provenance.cpu_model(), "threads": args.threads, "cores_available": runtime.default_threads(),
            "model": args.model, "weights": args.weights, "note": str(note), "rows": rows}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"\nCPU: {info['cpu']}; onnxruntime threads {args.threads}; note {duration / 60:.1f} min, "
              f"48 kHz OGG/Vorbis; RTF = audio seconds / wall seconds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
