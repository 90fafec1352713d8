"""One whole note: read -> resample -> VAD -> windows -> classify -> average, and its text form."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from .base import SAMPLE_RATE, VAD_FILE, InferError
from .checks import Level
from .model import EmotionModel
from .reader import open_audio, read_blocks
from .resample import Resampler
from .vad import SileroVad, SpeechSegmenter, VadStream, find_vad_model
from .windows import Windower


@dataclass
class Options:
    vad: bool = True
    window: float = 8.0
    hop: float = 8.0
    min_speech: float = 1.0       # a window (the last, partial one) needs at least this much speech
    block_seconds: float = 10.0   # how much of the file is read at a time
    vad_threshold: float = 0.5

    def check(self, clip_seconds: float | None) -> None:
        if not all(0 < s < float("inf") for s in (self.window, self.hop, self.min_speech, self.block_seconds)):
            raise InferError("--window, --hop, --min-speech and the block size must be positive and finite")
        if self.min_speech > self.window:
            raise InferError(f"--min-speech ({self.min_speech} s) is longer than --window ({self.window} s)")
        if clip_seconds is not None and self.window > clip_seconds + 1e-9:
            raise InferError(f"--window {self.window} s is longer than the {clip_seconds} s clips the model "
                             "was trained on (its preprocessing would cut each window there)")


@dataclass
class Stats:
    reads: int = 0
    max_read_frames: int = 0
    max_buffered_samples: int = 0
    resampler: str = "none"
    wall_s: float = 0.0
    model_s: float = 0.0
    vad_s: float = 0.0


def analyse(path: str | os.PathLike, model: EmotionModel, options: Options | None = None,
            vad: SileroVad | None = None, stats: Stats | None = None) -> dict:
    """One audio file -> its emotion, distribution and timeline (a JSON-ready dict).

    ``status`` is ``ok``, ``no_speech`` (VAD found none), ``too_short`` (less speech/audio than
    ``min_speech``) or ``silent`` (every window silent by :class:`~.checks.Level`'s rule: no
    variation, digital silence or a constant DC offset): in the last three there is no emotion,
    rather than a guess. A file holding NaN or inf samples is an :class:`InferError` naming how
    many: it is corrupt, and classifying it would give a confident answer about nothing.
    """
    o = options or Options()
    o.check(model.clip_seconds)
    if o.vad and vad is None:
        raise InferError("VAD is on but no VAD model was given (pass --no-vad to classify everything)")
    stats = stats if stats is not None else Stats()
    t0 = time.perf_counter()
    f, info = open_audio(path)
    sr = SAMPLE_RATE
    win, hop, min_len = (int(round(s * sr)) for s in (o.window, o.hop, o.min_speech))
    windower = Windower(win, hop, min_len)
    resampler = Resampler(info.sample_rate, sr)
    stats.resampler = resampler.kind
    stream = VadStream(vad, SpeechSegmenter(threshold=o.vad_threshold)) if o.vad else None
    timeline, probs = [], []
    quiet: list[Level] = []   # the silent windows' levels
    n16 = 0              # 16 kHz samples produced so far
    speech = 0           # samples passed on as speech

    def classify(windows):
        for a, b, wave, pos in windows:
            if not wave.size:
                continue     # no speech in this span of the file: nothing to say about it
            entry = {"start_s": round(a / sr, 3), "end_s": round(b / sr, 3), "speech_s": round(wave.size / sr, 3)}
            if wave.size < min_len:
                entry.update(emotion=None, skipped=f"{wave.size / sr:.2f} s of speech < {o.min_speech:g} s")
                timeline.append(entry)
                continue
            level = Level().add(wave)
            if level.silent:
                quiet.append(level)
                entry.update(emotion=None, skipped="silent")
                timeline.append(entry)
                continue
            t = time.perf_counter()
            p = model.probabilities(wave)
            stats.model_s += time.perf_counter() - t
            probs.append(p)
            entry.update(emotion=model.labels[int(np.argmax(p))],
                         probabilities={c: round(float(v), 4) for c, v in zip(model.labels, p)})
            timeline.append(entry)

    def feed(x: np.ndarray):
        nonlocal n16, speech
        if not x.size:
            return
        start = n16
        n16 += x.size
        if stream is None:
            pieces = [(np.arange(start, start + x.size, dtype=np.int64), x)]
        else:
            t = time.perf_counter()
            pieces = list(stream.push(x))
            stats.vad_s += time.perf_counter() - t
        for pos, piece in pieces:
            speech += piece.size
            windower.push(piece, pos)
        classify(windower.ready(n16 if stream is None else stream.seg.keep_from()))

    nonfinite = [0]      # NaN/inf samples: such a file is refused, never classified
    with f:
        block = max(1, int(round(o.block_seconds * info.sample_rate)))
        for x in read_blocks(f, block, nonfinite):
            stats.reads += 1
            stats.max_read_frames = max(stats.max_read_frames, x.size)
            if nonfinite[0]:
                continue     # keep reading only to count them all
            feed(resampler.process(x))
        if nonfinite[0]:
            raise InferError(f"{path}: non-finite audio: {nonfinite[0]} of {info.frames * info.channels} "
                             "samples are NaN or inf; not classified (the audio is corrupt)")
        feed(resampler.flush())
    if stream is not None:
        t = time.perf_counter()
        for pos, piece in stream.finish():
            speech += piece.size
            windower.push(piece, pos)
        stats.vad_s += time.perf_counter() - t
    classify(windower.flush(n16))
    stats.max_buffered_samples = max(windower.max_buffered, stream.max_buffered if stream else 0)
    stats.wall_s = time.perf_counter() - t0

    result = {
        "file": str(path), "status": "ok", "message": None,
        "duration_s": round(info.seconds, 3), "sample_rate": info.sample_rate, "channels": info.channels,
        "resampler": stats.resampler,
        "vad": bool(o.vad), "speech_s": round(speech / sr, 3) if o.vad else None,
        "window_s": o.window, "hop_s": o.hop, "min_speech_s": o.min_speech,
        "windows": len(probs), "windowing": "spans of the file's timeline; non-speech inside a span left out",
        "emotion": None, "distribution": None, "timeline": timeline,
        "pooling": "mean of window probabilities",
    }
    if stream is not None:
        result["speech_segments"] = [[round(a / sr, 3), round(b / sr, 3)] for a, b in stream.seg.segments]
    if probs:
        mean = np.mean(probs, axis=0)
        result["emotion"] = model.labels[int(np.argmax(mean))]
        result["distribution"] = {c: round(float(v), 4) for c, v in zip(model.labels, mean)}
        return result
    if info.frames == 0:
        result.update(status="too_short", message="the file holds no audio frames")
    elif quiet:   # every window with enough speech was silent
        result.update(status="silent", message=f"no variation in any window: {quiet[0].message()}")
    elif o.vad and speech == 0:
        result.update(status="no_speech", message="no speech found (voice activity detection)")
    elif o.vad:
        result.update(status="too_short", message=f"no {o.window:g} s span of the file holds {o.min_speech:g} s "
                                                  f"of speech ({speech / sr:.2f} s of speech in all)")
    else:
        result.update(status="too_short", message=f"{info.seconds:.2f} s of audio; a window needs at "
                                                  f"least {o.min_speech} s")
    return result


def analyse_files(model_dir, files, options: Options | None = None, threads: int | None = None) -> tuple[dict, int]:
    """Analyse audio files with an exported model folder: the JSON document (``results``: one
    :func:`analyse` result per file, or ``status: error`` with the reason) and the exit status
    (2 if a file failed). The VAD model is the folder's, else an installed silero-vad's."""
    model = EmotionModel(model_dir, threads)
    opts = options or Options()
    opts.check(model.clip_seconds)
    vad = None
    if opts.vad:
        path = find_vad_model(model_dir)
        if path is None:
            raise InferError(f"no VAD model: the model folder has no {VAD_FILE} and silero-vad is "
                             "not installed; pass --no-vad, or pip install silero-vad")
        vad = SileroVad(path)
    results, status = [], 0
    for a in files:
        try:
            results.append(analyse(a, model, opts, vad))
        except InferError as exc:
            results.append({"file": str(a), "status": "error", "message": str(exc)})
            status = 2
    doc = {"model": str(model_dir), "labels": model.labels,
           "model_card": {k: model.card.get(k) for k in ("model", "recipe", "run_id", "weights", "data")
                          if k in model.card},
           "vad_model": str(vad.path) if vad else None, "results": results}
    return doc, status


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:04.1f}"


def format_model(card: dict) -> str:
    """One line saying what made the predictions: the model, its weights and what its head was
    trained on, SYNTHETIC and RANDOM-INIT in capitals (a text output must not hide them)."""
    if not card:
        return "model: no model card in the folder (weights and training data unknown)"
    data = card.get("data") or {}
    corpora = ", ".join(sorted(data.get("corpora") or {})) or "unknown corpora"
    trained = f"trained on SYNTHETIC data ({corpora})" if data.get("synthetic") else f"trained on {corpora}"
    run = f" (run {card['run_id']})" if card.get("run_id") is not None else ""
    return (f"model: {card.get('model', '?')} / {card.get('recipe', '?')}{run}; weights "
            f"{card.get('weights', 'unknown')}; {trained}")


def format_text(result: dict, timeline: bool = True) -> str:
    """A few lines for people."""
    lines = [f"{result['file']}: {result['duration_s']:.1f} s"
             + (f", speech {result['speech_s']:.1f} s (VAD)" if result["vad"] else ", no VAD")
             + f", {result['windows']} window(s) of {result['window_s']:g} s every {result['hop_s']:g} s"]
    if result["status"] != "ok":
        lines.append(f"  {result['status'].replace('_', ' ')}: {result['message']}")
        return "\n".join(lines)
    dist = result["distribution"]
    lines.append(f"  emotion: {result['emotion']} ({dist[result['emotion']]:.2f})   "
                 + "  ".join(f"{c} {p:.2f}" for c, p in sorted(dist.items(), key=lambda kv: -kv[1])))
    if timeline:
        for w in result["timeline"]:
            if w.get("emotion") is None:
                lines.append(f"    {_clock(w['start_s'])}-{_clock(w['end_s'])}  ({w.get('skipped')})")
                continue
            top = "  ".join(f"{c} {p:.2f}" for c, p in w["probabilities"].items())
            lines.append(f"    {_clock(w['start_s'])}-{_clock(w['end_s'])}  {w['emotion']:<8} {top}")
    return "\n".join(lines)
