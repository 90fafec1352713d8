"""Does ``embed_files`` keep the encoder busy? Its throughput as a ratio to a bare ``session.run`` loop.

    python benchmarks/pipeline.py                       # 120 real RAVDESS clips, fp32 + static-int8
    python benchmarks/pipeline.py --clips 40 --repeats 2 --recipes static-int8

For each recipe of DistilHuBERT (``--weights random:0``: no hub weights here; speed does not depend
on the values) the same clips go through
  (a) bare:     ``session.run`` over clips decoded and preprocessed beforehand (the ceiling),
  (b) pipeline: ``embed_files`` with its default prefetch,
  (c) serial:   ``embed_files(prefetch=0)``: decode, embed, save in turn (what it did before),
each (b) and (c) with a cold embedding cache (a fresh folder) and a warm OS file cache. The three
run back to back on chunks of ``--chunk`` clips, in a rotating order, over all clips ``--repeats``
times; a ratio is taken between runs seconds apart, so it holds on a loaded machine better than
the times do (the load average is printed with it).
The target is pipeline / bare >= 0.95. Real clips: ``../shared/data/ravdess-16k`` (or ``--data``)
when present, else the synthetic RAVDESS-like corpus (tiny size: 120 clips).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from serbench import atomic, audio, backbones, measure, registry
from serbench.artefacts import cache, encoders
from serbench.embed import PREFETCH, embed_files, file_hashes, speech_segment
from serbench.synth import corpora as synth

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ravdess-16k"
TARGET = 0.95


def pick_clips(data: Path, n: int, scratch: Path) -> tuple[list[str], str]:
    """``n`` clips spread evenly over the corpus (every actor), and where they came from."""
    files = sorted(str(p) for p in data.glob("Actor_*/*.flac")) if data.is_dir() else []
    source = f"real RAVDESS ({data.resolve()})"
    if not files:
        root = synth.write_all(scratch / "synthetic", seed=0, size="tiny", corpora=("ravdess",),
                               progress=False)["ravdess"]
        files, source = sorted(str(p) for p in root.glob("Actor_*/*.wav")), "synthetic RAVDESS-like (tiny)"
    step = max(1, len(files) // n)
    return files[::step][:n], f"{min(n, len(files))} clips of {source}"


def bare(session, waves: list[np.ndarray]) -> float:
    """Seconds for ``session.run`` over the pre-processed clips: nothing but inference."""
    feed, out = session.get_inputs()[0].name, [session.get_outputs()[0].name]
    start = time.perf_counter()
    for w in waves:
        session.run(out, {feed: w[None]})
    return time.perf_counter() - start


def through_cache(files, enc, key, pre, scratch: Path, prefetch: int) -> tuple[float, np.ndarray]:
    """Seconds for ``embed_files`` into a fresh (cold) embedding cache, and the embeddings."""
    root = Path(tempfile.mkdtemp(dir=scratch, prefix="emb-"))
    start = time.perf_counter()
    X, stats = embed_files(files, enc, key, pre, cache_root=root, progress=False, prefetch=prefetch)
    seconds = time.perf_counter() - start
    assert stats["computed"] == len(files), stats
    return seconds, X


def shares(files, waves, session, pre, scratch: Path) -> dict:
    """Per clip, what the serial path does besides inference, each timed on its own (ms)."""
    feed, out = session.get_inputs()[0].name, [session.get_outputs()[0].name]
    t0 = time.perf_counter()
    for f in files:
        speech_segment(f, pre)
    t1 = time.perf_counter()
    file_hashes(files)
    t2 = time.perf_counter()
    emb = session.run(out, {feed: waves[0][None]})[0][0].mean(axis=1).astype(np.float32)
    target = Path(tempfile.mkdtemp(dir=scratch, prefix="save-"))
    t3 = time.perf_counter()
    for i in range(len(files)):
        buf = io.BytesIO()
        np.save(buf, emb)
        atomic.write_bytes(target / f"{i}.npy", buf.getvalue(), what="a probe embedding")
    t4 = time.perf_counter()
    n = len(files)
    return {"decode+preprocess": 1e3 * (t1 - t0) / n, "hash": 1e3 * (t2 - t1) / n,
            "save (np.save + atomic write)": 1e3 * (t4 - t3) / n}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--clips", type=int, default=120)
    p.add_argument("--recipes", default="fp32,static-int8")
    p.add_argument("--model", default="distilhubert")
    p.add_argument("--weights", default="random:0")
    p.add_argument("--repeats", type=int, default=3, help="times each clip goes through each mode")
    p.add_argument("--chunk", type=int, default=40, help="clips per back-to-back comparison (one embed_files call)")
    p.add_argument("--prefetch", type=int, default=PREFETCH)
    p.add_argument("--json", help="also write the measurements to this JSON file")
    args = p.parse_args(argv)

    entry = registry.load_model(args.model)
    pre = audio.Preprocess(**entry.input)
    net, prov = backbones.build(entry, args.weights)
    cal_waves, cal_ids = measure.clips(32, measure.CALIBRATION_SEED)
    with tempfile.TemporaryDirectory(prefix="serbench-pipeline-") as tmp:
        scratch = Path(tmp)
        files, source = pick_clips(args.data, args.clips, scratch)
        waves = [speech_segment(f, pre) for f in files]   # also warms the OS file cache
        seconds = sum(w.size for w in waves) / audio.SAMPLE_RATE
        print(f"{source}: {seconds:.0f} s of speech; {args.model} ({backbones.describe(prov)}); "
              f"prefetch {args.prefetch}; {os.cpu_count()} cores")
        opened = {}
        for name in args.recipes.split(","):
            recipe = registry.load_recipe(name)
            art = cache.build(entry, recipe, (net, prov), cal_waves if recipe.calibration else None,
                              cal_ids if recipe.calibration else None)
            opened[name] = (art.path.name, encoders.open_encoder(art))
        for name, (key, enc) in opened.items():      # warm-up; and both paths agree bit for bit
            _, Xp = through_cache(files[:8], enc, key, pre, scratch, args.prefetch)
            _, Xs = through_cache(files[:8], enc, key, pre, scratch, 0)
            assert np.array_equal(Xp, Xs), f"{name}: pipeline and serial embeddings differ"
        part = shares(files, waves, next(iter(opened.values()))[1].session, pre, scratch)
        print("besides inference, per clip: " + ", ".join(f"{k} {v:.2f} ms" for k, v in part.items()))

        modes = ("bare", "pipeline", "serial")
        chunks = [list(range(a, min(a + args.chunk, len(files)))) for a in range(0, len(files), args.chunk)]
        runs = {name: {how: [] for how in modes} for name in opened}
        for rep in range(args.repeats):
            for c, chunk in enumerate(chunks):
                for name, (key, enc) in opened.items():
                    k = rep * len(chunks) + c            # rotate the order, so no mode always goes first
                    for how in modes[k % 3:] + modes[:k % 3]:
                        fs, ws = [files[i] for i in chunk], [waves[i] for i in chunk]
                        t = (bare(enc.session, ws) if how == "bare" else
                             through_cache(fs, enc, key, pre, scratch, args.prefetch if how == "pipeline" else 0)[0])
                        runs[name][how].append(t)
            print(f"repeat {rep + 1}: " + "; ".join(
                f"{name} bare {sum(r['bare']):.1f} s, pipeline {sum(r['pipeline']):.1f} s, serial {sum(r['serial']):.1f} s"
                for name, r in runs.items()) + f" (so far); load {os.getloadavg()[0]:.2f}", flush=True)

    print(f"\nthroughput as a ratio to the bare session.run loop: over all {args.repeats} x {len(files)} clips, "
          f"and the median [quartiles] of the {len(chunks) * args.repeats} chunks of {args.chunk} clips, each mode "
          f"run back to back on the chunk; load average now {', '.join(f'{x:.2f}' for x in os.getloadavg())}:")
    summary, ok = {}, True
    for name, r in runs.items():
        row = {}
        for how in ("pipeline", "serial"):
            q = statistics.quantiles([b / t for b, t in zip(r["bare"], r[how])], n=4)
            row[how] = {"overall": sum(r["bare"]) / sum(r[how]), "median": q[1], "q1": q[0], "q3": q[2]}
        row["clips_per_s_bare"] = len(files) * args.repeats / sum(r["bare"])
        summary[name] = row
        ok &= row["pipeline"]["overall"] >= TARGET
        print(f"  {name:12s}" + "".join(
            f"   {how} {row[how]['overall']:.3f} (chunks {row[how]['median']:.3f} [{row[how]['q1']:.3f}, "
            f"{row[how]['q3']:.3f}])" for how in ("pipeline", "serial"))
              + f"   (bare {row['clips_per_s_bare']:.1f} clips/s)")
    print(f"target pipeline / bare >= {TARGET}: {'met' if ok else 'NOT met'}")
    if args.json:
        atomic.write_text(Path(args.json), json.dumps({"source": source, "prefetch": args.prefetch,
                                                       "shares_ms": part, "runs_s": runs, "ratios": summary},
                                                      indent=2), what="pipeline benchmark results")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
