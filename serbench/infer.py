"""Long voice notes -> emotion: read in blocks -> 16 kHz -> VAD -> 8 s windows -> classify -> average.

This is the runtime half of a ``serbench export`` model folder, and it is deliberately standalone:
it imports only numpy, soundfile and onnxruntime (plus soxr when it is installed, for resampling;
without it a numpy polyphase resampler is used), never torch, librosa or the rest of serbench.
``serbench export`` copies this very file into the model folder as ``infer.py``, so a folder runs
on a machine holding just those three packages::

    python MODEL_DIR/infer.py note.ogg [--json] [--no-vad] [--window 8] [--hop 8]

The pipeline, one bounded-memory pass over the file:

* **read**: ``soundfile`` blocks of ``block_seconds`` at the file's own rate, channels averaged
  (as training did), resampled to 16 kHz block by block (a streaming resampler carries its state
  across blocks). A file is never loaded whole.
* **VAD** (optional): Silero VAD's ONNX model (``vad/silero_vad_16k_sequence.onnx`` in the model
  folder, copied from the silero-vad PyPI package at export; no torch needed) gives a speech probability per 32 ms frame, and
  :class:`SpeechSegmenter` turns them into speech segments with exactly silero's
  ``get_speech_timestamps`` rules (threshold 0.5, exit threshold 0.35, >= 250 ms speech, >= 100 ms
  silence to end a segment, 30 ms padding), but streaming: speech is passed on as soon as it is
  certain, so neither a long silence nor a long stretch of speech is held in memory.
* **windows**: the speech (non-speech cut out) is cut into ``window`` s windows every ``hop`` s
  (:func:`plan_windows`); a last, partial window is kept when it holds at least ``min_speech`` s.
* **classify**: each window gets the model's training preprocessing (trim 20 dB below the loudest
  frame, pre-emphasis, peak-normalise; :func:`preprocess`, a numpy copy of
  ``serbench.audio.Preprocess``), its speech part is embedded (padding left out, as serbench
  embeds during evaluation), and the exported graph gives class probabilities.
* **aggregate**: probabilities averaged over windows (the paper's temporal pooling) give the
  note's emotion; the per-window timeline keeps each window's time range in the *original* file.
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

try:  # inside serbench, errors print cleanly through its CLI; standalone, a plain exception
    from serbench.errors import SerbenchError as _ErrorBase
except ImportError:  # pragma: no cover - exercised in the standalone model folder
    _ErrorBase = Exception

RUNTIME_VERSION = 1
SAMPLE_RATE = 16_000
MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.json"
PREPROCESS_FILE = "preprocess.json"
VAD_FILE = "vad/silero_vad_16k_sequence.onnx"
INPUT_NAME, OUTPUT_NAME = "input_values", "probabilities"
SILENT_PEAK = 1e-4        # a window whose loudest sample is below -80 dBFS is digital silence


class InferError(_ErrorBase):
    """Bad input (an unreadable file, a folder that is not a model): printed without a traceback."""


# ---- audio in, block by block --------------------------------------------------------------------


@dataclass
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def open_audio(path: str | os.PathLike) -> tuple[sf.SoundFile, AudioInfo]:
    p = Path(path)
    try:
        p.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InferError(f"{path}: symlink loop (too many levels of symbolic links)") from exc
        if p.is_symlink():
            raise InferError(f"{path}: broken symlink (points to {os.readlink(p)}, which does not exist)") from exc
        if exc.errno == errno.ENOENT:
            raise InferError(f"no such file: {path}") from exc
        raise InferError(f"{path}: cannot read file: {exc.strerror}") from exc
    if p.is_dir():
        raise InferError(f"{path}: is a directory, not an audio file")
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as exc:
        raise InferError(f"{path}: cannot decode audio ({exc}); formats are libsndfile's "
                         f"(wav, flac, ogg/vorbis, opus, mp3, aiff, ...)") from exc
    return f, AudioInfo(str(path), int(f.samplerate), int(f.channels), int(f.frames),
                        f"{f.format}/{f.subtype}")


def read_blocks(f: sf.SoundFile, block_frames: int, nonfinite: list[int] | None = None):
    """Mono float32 blocks of at most ``block_frames`` frames at the file's own rate.

    Channels are averaged (as ``serbench.audio.load`` does for training), not the first taken.
    When ``nonfinite`` is given, ``nonfinite[0]`` counts the NaN/inf samples read (before
    averaging, so each channel's sample counts).
    """
    while True:
        data = f.read(frames=block_frames, dtype="float32", always_2d=True)
        if not len(data):
            return
        if nonfinite is not None:
            nonfinite[0] += int(data.size - np.count_nonzero(np.isfinite(data)))
        yield data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0].copy()


class PolyphaseResampler:
    """Streaming rational resampler in numpy: Kaiser-windowed sinc, polyphase, state kept
    across blocks, delay compensated, output length ``round(n_in * out / in)`` like soxr.

    The fallback when soxr is not installed. With the defaults (32 zero crossings, Kaiser beta 10,
    cut-off at 0.95 of the lower Nyquist frequency) its output differs from soxr's HQ resampler
    by about -90 dB below 7 kHz when downsampling (-49 dB when upsampling 8 kHz) (tested), far
    below what changes an embedding.
    """

    def __init__(self, sr_in: int, sr_out: int, zero_crossings: int = 32, beta: float = 10.0,
                 rolloff: float = 0.95):
        g = math.gcd(int(sr_in), int(sr_out))
        self.up, self.down = int(sr_out) // g, int(sr_in) // g
        big = max(self.up, self.down)
        self.half = zero_crossings * big
        n = np.arange(-self.half, self.half + 1, dtype=np.float64)
        cutoff = rolloff * 0.5 / big                      # cycles per sample at the upsampled rate
        h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(n.size, beta) * self.up
        self.taps = -(-h.size // self.up)                 # input samples per output sample
        h = np.concatenate([h, np.zeros(self.taps * self.up - h.size)])
        # table[p, q] = h[q*up + p]: output m uses x[j0 - q] * table[p, q], t = m*down + half,
        # j0 = t // up, p = t % up; reversed along q so a gathered window is in time order.
        self.table = h.reshape(self.taps, self.up).T[:, ::-1].astype(np.float32).copy()
        self.hist = np.zeros(0, np.float32)                # input samples [hist_start, n_in)
        self.hist_start = 0
        self.n_in = 0
        self.m = 0                                         # next output index

    def _emit(self, m_end: int) -> np.ndarray:
        if m_end <= self.m:
            return np.zeros(0, np.float32)
        out = []
        for a in range(self.m, m_end, 8192):
            m = np.arange(a, min(a + 8192, m_end), dtype=np.int64)
            t = m * self.down + self.half
            j0, p = t // self.up, t % self.up
            idx = (j0 - self.taps + 1 - self.hist_start)[:, None] + np.arange(self.taps)[None, :]
            out.append(np.einsum("ij,ij->i", self.hist[idx], self.table[p]))
        self.m = m_end
        return np.concatenate(out).astype(np.float32)

    def _append(self, x: np.ndarray) -> None:
        keep = self.taps + 1          # what the next output can still reach back to
        first_needed = (self.m * self.down + self.half) // self.up - self.taps + 1
        drop = max(0, min(first_needed, self.n_in - keep) - self.hist_start)
        self.hist = np.concatenate([self.hist[drop:], x])
        self.hist_start += drop
        self.n_in += x.size

    def process(self, x: np.ndarray) -> np.ndarray:
        if self.hist.size == 0 and self.n_in == 0:     # x[-k] = 0 before the start
            self.hist = np.zeros(self.taps, np.float32)
            self.hist_start = -self.taps
        self._append(np.asarray(x, np.float32))
        # output m is ready when its newest input sample j0 has arrived
        m_end = max(self.m, ((self.n_in - 1) * self.up - self.half) // self.down + 1)
        return self._emit(m_end)

    def flush(self) -> np.ndarray:
        total = (2 * self.n_in * self.up + self.down) // (2 * self.down)
        if total <= self.m:
            return np.zeros(0, np.float32)
        last_j0 = ((total - 1) * self.down + self.half) // self.up
        self._append(np.zeros(max(0, last_j0 + 1 - self.n_in), np.float32))
        return self._emit(total)


class Resampler:
    """Streaming resampler to ``sr_out``: soxr's HQ stream (what training used) when soxr is
    installed, else :class:`PolyphaseResampler`. ``kind`` says which ran."""

    def __init__(self, sr_in: int, sr_out: int = SAMPLE_RATE, prefer_soxr: bool = True):
        self.sr_in, self.sr_out = int(sr_in), int(sr_out)
        self.kind, self._soxr, self._poly = "none", None, None
        if self.sr_in == self.sr_out:
            return
        if prefer_soxr:
            try:
                import soxr

                self._soxr = soxr.ResampleStream(self.sr_in, self.sr_out, 1, dtype="float32", quality="HQ")
                self.kind = f"soxr {soxr.__version__} HQ"
                return
            except ImportError:
                pass
        self._poly = PolyphaseResampler(self.sr_in, self.sr_out)
        self.kind = "numpy polyphase (soxr not installed)"

    def process(self, x: np.ndarray) -> np.ndarray:
        if self._soxr is not None:
            return self._soxr.resample_chunk(np.asarray(x, np.float32), last=False)
        return self._poly.process(x) if self._poly is not None else np.asarray(x, np.float32)

    def flush(self) -> np.ndarray:
        if self._soxr is not None:
            return self._soxr.resample_chunk(np.zeros(0, np.float32), last=True)
        return self._poly.flush() if self._poly is not None else np.zeros(0, np.float32)


# ---- the training preprocessing, in numpy ------------------------------------------------------


def trim_interval(y: np.ndarray, top_db: float = 20.0, frame_length: int = 2048,
                  hop_length: int = 512) -> tuple[int, int]:
    """``librosa.effects.trim``'s interval with its defaults: centred frames (zero padded), RMS
    per frame, frames within ``top_db`` of the loudest frame are kept, and the interval runs from
    the first kept frame's start to one hop past the last kept frame."""
    y = np.asarray(y, np.float32)
    pad = frame_length // 2
    yp = np.pad(y, (pad, pad))
    frames = np.lib.stride_tricks.sliding_window_view(yp, frame_length)[::hop_length]
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float32), axis=-1, dtype=np.float32))
    power = np.square(rms)
    ref = np.square(np.max(rms))
    db = 10.0 * np.log10(np.maximum(np.float32(1e-10), power)) \
        - 10.0 * np.log10(np.maximum(np.float32(1e-10), ref))
    keep = np.flatnonzero(db > -top_db)
    if keep.size == 0:
        return 0, 0
    return int(keep[0] * hop_length), int(min(y.size, (keep[-1] + 1) * hop_length))


def preprocess(wave: np.ndarray, cfg: dict) -> tuple[np.ndarray, int]:
    """``serbench.audio.Preprocess`` without librosa/scipy: ``(processed, n_valid)``.

    Trim -> cut to ``seconds`` -> pre-emphasis -> peak-normalise -> zero-pad to ``seconds``.
    """
    y = np.asarray(wave, np.float32)
    if cfg.get("trim_db") is not None and y.size:
        a, b = trim_interval(y, float(cfg["trim_db"]))
        y = y[a:b]
    n = None if cfg.get("seconds") is None else int(round(cfg["seconds"] * cfg.get("sample_rate", SAMPLE_RATE)))
    if n is not None:
        y = y[:n]
    if cfg.get("preemphasis") is not None and y.size:
        a = float(cfg["preemphasis"])
        y = np.concatenate([y[:1], y[1:] - np.float32(a) * y[:-1]]).astype(np.float32)
    if cfg.get("peak") is not None and y.size:
        top = float(np.max(np.abs(y)))
        if top > 0:
            y = (y * (cfg["peak"] / top)).astype(np.float32)
    n_valid = int(y.size)
    if n is not None and y.size < n:
        y = np.pad(y, (0, n - y.size))
    return y.astype(np.float32), n_valid


def model_input(wave: np.ndarray, cfg: dict) -> np.ndarray:
    """What the encoder sees for one window: the preprocessed speech part (padding cut), at
    least ``min_samples`` long (zero-padded), as ``serbench.embed`` embeds during evaluation."""
    y, n_valid = preprocess(wave, cfg)
    m = int(cfg.get("min_samples", SAMPLE_RATE // 2))
    y = y[: max(n_valid, m)]
    return np.pad(y, (0, m - y.size)) if y.size < m else y


# ---- windows ------------------------------------------------------------------------------------


def plan_windows(total: int, window: int, hop: int, min_len: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` over ``total`` samples of speech.

    Full windows start at ``0, hop, 2*hop, ...`` while they fit. If speech is left after the
    last full window (or there was none), one more window starts at the next hop position and runs
    to the end; it is kept when it holds at least ``min_len`` samples, else dropped. So speech
    shorter than ``min_len`` gives no window at all.
    """
    if window <= 0 or hop <= 0 or min_len <= 0:
        raise InferError(f"window, hop and minimum length must be positive (got {window}, {hop}, {min_len})")
    out, start = [], 0
    while start + window <= total:
        out.append((start, start + window))
        start += hop
    covered = out[-1][1] if out else 0
    if start < total and total > covered and total - start >= min_len:
        out.append((start, total))
    return out


class Windower:
    """:func:`plan_windows`, streaming: speech arrives in pieces, full windows leave as soon as
    they fill, and only the samples a later window still needs are kept. Each sample carries
    its position in the original (16 kHz) file, so a window knows its time range there."""

    def __init__(self, window: int, hop: int, min_len: int):
        plan_windows(1, window, hop, min_len)  # validates
        self.window, self.hop, self.min_len = window, hop, min_len
        self.buf = np.zeros(0, np.float32)
        self.pos = np.zeros(0, np.int64)
        self.buf_start = 0      # speech-stream index of buf[0]
        self.next_start = 0     # speech-stream index where the next window starts
        self.total = 0          # speech samples received
        self.emitted_end = 0    # end of the last emitted window
        self.max_buffered = 0

    def push(self, samples: np.ndarray, positions: np.ndarray):
        """Add speech; yield ``(start, end, wave, positions)`` for each window that filled."""
        self.buf = np.concatenate([self.buf, samples])
        self.pos = np.concatenate([self.pos, positions])
        self.total += samples.size
        self.max_buffered = max(self.max_buffered, self.buf.size)
        while self.next_start + self.window <= self.total:
            yield self._take(self.next_start, self.next_start + self.window)
            self.next_start += self.hop
            self._drop()
        self._drop()

    def flush(self):
        """Yield the last, partial window if it is long enough (see :func:`plan_windows`)."""
        s = self.next_start
        if s < self.total and self.total > self.emitted_end and self.total - s >= self.min_len:
            yield self._take(s, self.total)

    def _take(self, a: int, b: int):
        i, j = a - self.buf_start, b - self.buf_start
        self.emitted_end = b
        return a, b, self.buf[i:j].copy(), self.pos[i:j].copy()

    def _drop(self) -> None:
        cut = min(self.next_start, self.total) - self.buf_start
        if cut > 0:
            self.buf, self.pos = self.buf[cut:], self.pos[cut:]
            self.buf_start += cut


# ---- voice activity detection -------------------------------------------------------------------


class SpeechSegmenter:
    """Silero's ``get_speech_timestamps_from_probs`` (no maximum segment length), streaming.

    Feed one speech probability per 512-sample frame; it reports speech as sample ranges of the
    16 kHz stream as soon as they are certain: from a segment's start (minus the padding) up to
    the point where the segment can no longer end earlier, and the rest (plus padding) when the
    segment closes. Segments shorter than ``min_speech_ms`` are never reported. The final
    timestamps equal silero's (tested), because with ``min_silence >= 2 * pad`` silero's padding
    never merges neighbours: every start moves ``pad`` earlier and every end ``pad`` later.
    """

    FRAME = 512

    def __init__(self, threshold: float = 0.5, neg_threshold: float | None = None,
                 min_speech_ms: int = 250, min_silence_ms: int = 100, speech_pad_ms: int = 30,
                 sample_rate: int = SAMPLE_RATE):
        self.threshold = threshold
        self.neg = max(threshold - 0.15, 0.01) if neg_threshold is None else neg_threshold
        self.min_speech = sample_rate * min_speech_ms / 1000
        self.min_silence = sample_rate * min_silence_ms / 1000
        self.pad = sample_rate * speech_pad_ms / 1000
        if self.min_silence < 2 * self.pad:
            raise InferError("min_silence_ms must be at least twice speech_pad_ms")
        self.i = 0                  # next frame index
        self.triggered = False
        self.start = 0
        self.temp_end = 0
        self.emitted = 0            # speech up to here has been reported
        self.segments: list[list[int]] = []   # [start, end] with padding, as silero returns them

    def keep_from(self) -> int:
        """The earliest sample that may still be reported (audio before it can be dropped)."""
        if self.triggered:
            return self.emitted
        return max(0, int(self.i * self.FRAME - self.pad))

    def push(self, probs) -> list[tuple[int, int]]:
        """Consume probabilities; return the newly certain speech ranges ``[a, b)``."""
        out = []
        for p in np.asarray(probs, np.float64).ravel():
            cur = self.i * self.FRAME
            self.i += 1
            if p >= self.threshold and self.temp_end:
                self.temp_end = 0
            if p >= self.threshold and not self.triggered:
                self.triggered, self.start = True, cur
                self.emitted = int(max(0, cur - self.pad))
                continue
            if p < self.neg and self.triggered:
                if not self.temp_end:
                    self.temp_end = cur
                if cur - self.temp_end >= self.min_silence:
                    end = self.temp_end
                    if end - self.start > self.min_speech:
                        stop = int(end + self.pad)
                        out.append((self.emitted, stop))
                        self.segments.append([int(max(0, self.start - self.pad)), stop])
                    self.triggered, self.temp_end = False, 0
                    continue
            if self.triggered:   # speech up to `certain` is in this segment, whatever comes next
                certain = self.temp_end if self.temp_end else cur + self.FRAME
                if certain - self.start > self.min_speech and certain > self.emitted:
                    out.append((self.emitted, certain))
                    self.emitted = certain
        return out

    def finish(self, n_samples: int) -> list[tuple[int, int]]:
        """End of audio (``n_samples`` long): close an open segment as silero does."""
        out = []
        if self.triggered and n_samples - self.start > self.min_speech:
            if n_samples > self.emitted:
                out.append((self.emitted, n_samples))
            self.segments.append([int(max(0, self.start - self.pad)), n_samples])
        self.triggered = False
        # an earlier segment's end padding may not reach past the audio's end
        for seg in self.segments:
            seg[1] = min(seg[1], n_samples)
        return [(a, min(b, n_samples)) for a, b in out if min(b, n_samples) > a]


class SileroVad:
    """Silero VAD's "sequence" ONNX model, run by onnxruntime over a stream of 16 kHz audio.

    Frames of 512 samples, each prefixed with the previous frame's last 64 samples, the LSTM state
    carried from call to call: the same per-frame probabilities (bit for bit) as silero's stock
    one-frame-per-call model, with one onnxruntime call per block of up to 512 frames.
    """

    FRAME, CONTEXT, MAX_FRAMES = 512, 64, 512

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        self.path = str(path)
        self.session = session(self.path, threads)
        names = {i.name for i in self.session.get_inputs()}
        if names != {"input", "h", "c"}:
            raise InferError(f"{path}: not silero VAD's sequence ONNX model (inputs {sorted(names)})")
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((1, 1, 128), np.float32)
        self.c = np.zeros((1, 1, 128), np.float32)
        self.context = np.zeros(self.CONTEXT, np.float32)

    def probs(self, frames: np.ndarray) -> np.ndarray:
        """Speech probabilities of consecutive full frames, shape (n, 512) -> (n,)."""
        frames = np.asarray(frames, np.float32)
        if not len(frames):
            return np.zeros(0, np.float32)
        ctx = np.concatenate([self.context[None], frames[:-1, -self.CONTEXT:]])
        x = np.concatenate([ctx, frames], axis=1)
        self.context = frames[-1, -self.CONTEXT:].copy()
        out = []
        for i in range(0, len(x), self.MAX_FRAMES):
            p, self.h, self.c = self.session.run(["speech_probs", "hn", "cn"],
                                                 {"input": x[i:i + self.MAX_FRAMES], "h": self.h, "c": self.c})
            out.append(np.asarray(p, np.float32).reshape(-1))
        return np.concatenate(out)


class VadStream:
    """Audio in (16 kHz, any block sizes), certain speech out as ``(positions, samples)``."""

    def __init__(self, vad: SileroVad, segmenter: SpeechSegmenter | None = None):
        self.vad, self.seg = vad, segmenter or SpeechSegmenter()
        self.vad.reset()
        self.buf = np.zeros(0, np.float32)
        self.buf_start = 0          # absolute index of buf[0]
        self.n = 0                  # samples received
        self.next_frame = 0         # absolute index of the next frame to score
        self.max_buffered = 0

    def _slice(self, ranges):
        for a, b in ranges:
            i, j = a - self.buf_start, b - self.buf_start
            assert i >= 0, "VAD dropped audio it still needed"
            yield np.arange(a, b, dtype=np.int64), self.buf[i:j].copy()

    def push(self, x: np.ndarray):
        self.buf = np.concatenate([self.buf, np.asarray(x, np.float32)])
        self.n += x.size
        self.max_buffered = max(self.max_buffered, self.buf.size)
        ready = (self.n - self.next_frame) // self.vad.FRAME
        if ready:
            i = self.next_frame - self.buf_start
            frames = self.buf[i: i + ready * self.vad.FRAME].reshape(ready, self.vad.FRAME)
            self.next_frame += ready * self.vad.FRAME
            yield from self._slice(self.seg.push(self.vad.probs(frames)))
        cut = min(self.seg.keep_from(), self.next_frame) - self.buf_start
        if cut > 0:
            self.buf = self.buf[cut:]
            self.buf_start += cut

    def finish(self):
        rest = self.n - self.next_frame
        if rest > 0:  # the last partial frame, zero-padded (as silero does)
            i = self.next_frame - self.buf_start
            frame = np.pad(self.buf[i:], (0, self.vad.FRAME - rest))
            yield from self._slice(self.seg.push(self.vad.probs(frame[None])))
        yield from self._slice(self.seg.finish(self.n))


def speech_timestamps(wave: np.ndarray, vad: SileroVad, **kwargs) -> list[dict]:
    """Whole-array convenience (tests, comparisons): silero-style ``[{'start', 'end'}]``."""
    stream = VadStream(vad, SpeechSegmenter(**kwargs))
    for _ in stream.push(np.asarray(wave, np.float32)):
        pass
    for _ in stream.finish():
        pass
    return [{"start": a, "end": b} for a, b in stream.seg.segments]


def find_vad_model(model_dir: str | os.PathLike | None = None) -> Path | None:
    """The VAD model shipped in the model folder, else the one inside an installed silero-vad
    package (found without importing it, which would import torch), else None."""
    if model_dir is not None and (Path(model_dir) / VAD_FILE).is_file():
        return Path(model_dir) / VAD_FILE
    import importlib.util

    spec = importlib.util.find_spec("silero_vad")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "data" / Path(VAD_FILE).name
        if candidate.is_file():
            return candidate
    return None


# ---- the model ----------------------------------------------------------------------------------


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def session(path, threads: int):
    """An onnxruntime CPU session: ``threads`` intra-op threads, quiet logs, and onnxruntime's
    native telemetry off, so nothing here (or in serbench, which opens every session through this)
    makes a network attempt. The one place sessions are opened."""
    import onnxruntime as ort

    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class EmotionModel:
    """An exported model folder: one ONNX graph (waveform -> class probabilities), its labels and
    its preprocessing settings."""

    def __init__(self, model_dir: str | os.PathLike, threads: int | None = None):
        self.dir = Path(model_dir)
        try:
            self.labels = list(json.loads((self.dir / LABELS_FILE).read_text())["classes"])
            self.preprocess = json.loads((self.dir / PREPROCESS_FILE).read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise InferError(f"{self.dir}: not an exported serbench model folder "
                             f"(needs {MODEL_FILE}, {LABELS_FILE}, {PREPROCESS_FILE}): {exc}") from exc
        if not (self.dir / MODEL_FILE).is_file():
            raise InferError(f"{self.dir}: no {MODEL_FILE}")
        self.card = {}
        if (self.dir / "model_card.json").is_file():
            self.card = json.loads((self.dir / "model_card.json").read_text())
        self.threads = threads or default_threads()
        self.session = session(self.dir / MODEL_FILE, self.threads)
        self.sample_rate = int(self.preprocess.get("sample_rate", SAMPLE_RATE))
        if self.sample_rate != SAMPLE_RATE:
            raise InferError(f"{self.dir}: model expects {self.sample_rate} Hz; this runtime feeds {SAMPLE_RATE}")

    @property
    def clip_seconds(self) -> float | None:
        return self.preprocess.get("seconds")

    def probabilities(self, window: np.ndarray) -> np.ndarray:
        """One window of raw 16 kHz audio -> class probabilities (the training preprocessing applied)."""
        x = model_input(window, self.preprocess)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: x[None]})[0][0].astype(np.float64)


# ---- the whole note -----------------------------------------------------------------------------


@dataclass
class Options:
    vad: bool = True
    window: float = 8.0
    hop: float = 8.0
    min_speech: float = 1.0       # a window (the last, partial one) needs at least this much speech
    block_seconds: float = 10.0   # how much of the file is read at a time
    vad_threshold: float = 0.5

    def check(self, clip_seconds: float | None) -> None:
        if not (self.window > 0 and self.hop > 0 and self.min_speech > 0 and self.block_seconds > 0):
            raise InferError("--window, --hop, --min-speech and the block size must be positive")
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
    ``min_speech``) or ``silent`` (digital silence only): in the last three there is no emotion,
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
    n16 = 0              # 16 kHz samples produced so far
    speech = 0           # samples passed on as speech

    def classify(windows):
        for a, b, wave, pos in windows:
            entry = {"start_s": round(float(pos[0]) / sr, 3), "end_s": round(float(pos[-1] + 1) / sr, 3),
                     "speech_s": round((b - a) / sr, 3)}
            if float(np.max(np.abs(wave))) < SILENT_PEAK:
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
            classify(windower.push(piece, pos))

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
            classify(windower.push(piece, pos))
        stats.vad_s += time.perf_counter() - t
    classify(windower.flush())
    stats.max_buffered_samples = max(windower.max_buffered, stream.max_buffered if stream else 0)
    stats.wall_s = time.perf_counter() - t0

    result = {
        "file": str(path), "status": "ok", "message": None,
        "duration_s": round(info.seconds, 3), "sample_rate": info.sample_rate, "channels": info.channels,
        "resampler": stats.resampler,
        "vad": bool(o.vad), "speech_s": round(speech / sr, 3) if o.vad else None,
        "window_s": o.window, "hop_s": o.hop, "min_speech_s": o.min_speech,
        "windows": len(probs), "emotion": None, "distribution": None, "timeline": timeline,
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
    elif o.vad and speech == 0:
        result.update(status="no_speech", message="no speech found (voice activity detection)")
    elif o.vad:
        result.update(status="too_short", message=f"only {speech / sr:.2f} s of speech; a window needs "
                                                  f"at least {o.min_speech} s")
    elif timeline:
        result.update(status="silent", message="the audio is digital silence")
    else:
        result.update(status="too_short", message=f"{info.seconds:.2f} s of audio; a window needs at "
                                                  f"least {o.min_speech} s")
    return result


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:04.1f}"


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


# ---- command line (shared by `serbench infer` and the standalone copy) -------------------------


def add_arguments(p: argparse.ArgumentParser, model_dir_optional: bool = False) -> None:
    if model_dir_optional:
        p.add_argument("inputs", nargs="+", metavar="[MODEL_DIR] AUDIO",
                       help="an exported model folder (default: the folder holding this script) and audio files")
    else:
        p.add_argument("model_dir", help="a folder written by `serbench export`")
        p.add_argument("audio", nargs="+", help="audio files (any libsndfile format, any rate/channels)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--no-vad", action="store_true", help="classify all audio, not only detected speech")
    p.add_argument("--window", type=float, default=8.0, help="window length in seconds (default 8.0)")
    p.add_argument("--hop", type=float, default=8.0, help="seconds between window starts (default 8.0)")
    p.add_argument("--min-speech", type=float, default=1.0,
                   help="a (last) window needs at least this many seconds of speech (default 1.0)")
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores available)")
    p.add_argument("--no-timeline", action="store_true", help="text output: overall result only")


def run(model_dir, audio: list[str], args) -> tuple[dict, int]:
    """Analyse files; returns the JSON document and the exit status (2 if a file failed)."""
    model = EmotionModel(model_dir, args.threads)
    opts = Options(vad=not args.no_vad, window=args.window, hop=args.hop, min_speech=args.min_speech)
    opts.check(model.clip_seconds)
    vad = None
    if opts.vad:
        path = find_vad_model(model_dir)
        if path is None:
            raise InferError(f"no VAD model: the model folder has no {VAD_FILE} and silero-vad is "
                             "not installed; pass --no-vad, or pip install silero-vad")
        vad = SileroVad(path)
    results, status = [], 0
    for a in audio:
        try:
            results.append(analyse(a, model, opts, vad))
        except InferError as exc:
            results.append({"file": str(a), "status": "error", "message": str(exc)})
            status = 2
    doc = {"model": str(model_dir), "labels": model.labels,
           "model_card": {k: model.card.get(k) for k in ("model", "recipe", "run_id", "weights") if k in model.card},
           "vad_model": str(vad.path) if vad else None, "results": results}
    return doc, status


def print_results(doc: dict, args) -> None:
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    for r in doc["results"]:
        if r["status"] == "error":
            print(f"{r['file']}: error: {r['message']}", file=sys.stderr)
        else:
            print(format_text(r, timeline=not args.no_timeline))


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python infer.py [MODEL_DIR] AUDIO...``."""
    p = argparse.ArgumentParser(prog="infer.py", description="Emotion of long voice notes with an exported "
                                "serbench model: VAD -> windows -> average of window probabilities.")
    add_arguments(p, model_dir_optional=True)
    args = p.parse_args(argv)
    inputs = list(args.inputs)
    if Path(inputs[0]).is_dir():
        model_dir = inputs.pop(0)
    else:
        model_dir = str(Path(__file__).resolve().parent)
    if not inputs:
        p.error("no audio files given")
    try:
        doc, status = run(model_dir, inputs, args)
    except InferError as exc:
        print(f"infer.py: error: {exc}", file=sys.stderr)
        return 2
    print_results(doc, args)
    return status


if __name__ == "__main__":
    sys.exit(main())
