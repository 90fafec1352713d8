"""Voice activity detection: Silero VAD's ONNX model, and its segmentation rules streamed."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import SAMPLE_RATE, VAD_FILE, InferError
from .model import session


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
            b = min(b, self.n)   # a segment's end padding can reach past the last sample received
            if b <= a:
                continue
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


def installed_vad_model() -> Path | None:
    """Silero VAD's sequence ONNX model inside an installed silero-vad package, found without
    importing it (importing it imports torch); None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("silero_vad")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "data" / Path(VAD_FILE).name
        if candidate.is_file():
            return candidate
    return None


def find_vad_model(model_dir: str | os.PathLike | None = None) -> Path | None:
    """The VAD model shipped in the model folder, else :func:`installed_vad_model`."""
    if model_dir is not None and (Path(model_dir) / VAD_FILE).is_file():
        return Path(model_dir) / VAD_FILE
    return installed_vad_model()
