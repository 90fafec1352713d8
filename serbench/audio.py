"""Audio in: decode, downmix, resample to 16 kHz, then the reference paper's preprocessing.

Decoding is soundfile (wav, flac, ogg), resampling soxr (a real band-limited resampler, not
interpolation). What is not usable audio is decided here, by the rules of
:mod:`serbench.runtime.checks` (shared with ``infer``): an implausible header
(:func:`header_problem`, read before a sample is decoded), NaN/inf samples and silence
(:func:`sample_problem`). The preprocessing steps are a frozen dataclass so that their settings
can be hashed into cache keys and stored with every result; the steps themselves are
:func:`serbench.runtime.preprocess`, the numpy code an exported model folder runs.
"""
from __future__ import annotations

import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr

from serbench import runtime
from serbench.errors import SerbenchError
from serbench.runtime import checks

SAMPLE_RATE = 16_000


class AudioError(SerbenchError):
    """A file that cannot be decoded; the message names the file and the reason."""


FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # the only encodings that can hold NaN or inf samples


def nonfinite_message(bad: int, total: int) -> str:
    return f"non-finite audio: {bad} of {total} samples are NaN or inf"


def truncation_message(header_frames: int, present_frames: int) -> str:
    return f"truncated: header says {header_frames} frames, file holds {present_frames}"


def load(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate``.

    Channels are averaged (not just the first taken) so a stereo recording keeps both talkers'
    energy; any input rate is resampled with soxr's high-quality filter. A file with NaN or inf
    samples, or a WAV whose data is shorter than its header says, is an :class:`AudioError`
    rather than audio: NaN would turn the whole clip into zeros downstream and still be scored.
    So is a header no clip can have (:func:`header_problem`), refused before decoding: a WAV
    claiming 1 Hz would otherwise be resampled to gigabytes.
    """
    problem = header_problem(path)
    if problem:
        raise AudioError(f"{path}: {problem}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{path}: cannot decode audio: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no audio frames (zero-length audio)")
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise AudioError(f"{path}: {nonfinite_message(bad, data.size)}")
    short = wav_truncation(path)
    if short is not None:
        raise AudioError(f"{path}: {truncation_message(*short)}")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)   # the same values, without a reduction
    return resample(mono, sr, sample_rate)


def header_problem(path: str | Path, max_seconds: float = checks.CLIP_MAX_SECONDS) -> str | None:
    """Why ``path``'s header cannot be a clip (:func:`serbench.runtime.checks.header_problem`: a
    sample rate outside 4-384 kHz, or longer than ``max_seconds``), read with ``soundfile.info``
    before anything is decoded; None when it is plausible, and also when there is no readable
    header (whoever decodes it then says why it cannot)."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError):
        return None
    return checks.header_problem(int(info.samplerate), int(info.frames), max_seconds)


def sample_problem(path: str | Path, block_frames: int = 1 << 16) -> str | None:
    """Why the samples of ``path`` are not usable audio, or None: NaN/inf samples (only float
    encodings, the ``FLOAT``/``DOUBLE`` subtypes, can hold them) or silence by the one rule,
    :class:`serbench.runtime.checks.Level` (the mono mix's RMS after removing its mean below
    -80 dBFS: digital silence, a constant DC offset), which ``infer`` applies to its windows.

    Decoded once, block by block into one reused buffer (bounded memory: about 1 ms a RAVDESS
    clip); the mono mix is the channels' mean, what :func:`load` gives the encoder (two channels
    in antiphase are silence).
    """
    level = checks.Level()
    bad = total = 0
    with sf.SoundFile(str(path)) as f:
        floats = f.subtype in FLOAT_SUBTYPES
        buf = np.empty((min(block_frames, f.frames) if f.frames > 0 else block_frames, f.channels), np.float64)
        while True:
            block = f.read(out=buf)
            if not len(block):
                break
            total += int(block.size)
            if floats:
                bad += int(block.size - np.count_nonzero(np.isfinite(block)))
            if not bad:
                level.add(block.mean(axis=1) if block.shape[1] > 1 else block[:, 0])
    if bad:
        return nonfinite_message(bad, total)
    if level.silent:
        return checks.silence_reason(level)
    return None


# WAVE format tags whose data is one block_align-sized frame per sample frame
_FRAME_PER_BLOCK = {0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE}   # PCM, float, A-law, mu-law, extensible


def wav_truncation(path: str | Path) -> tuple[int, int] | None:
    """``(frames the header declares, frames the file holds)`` when ``path`` is a RIFF/RF64 WAVE
    file whose data chunk is cut short, else None (also for any other format).

    libsndfile silently clamps a WAV's frame count to the bytes present, so a file cut short
    (a copy or a download that stopped, header intact) reads as a shorter clip; this compares the
    data chunk's declared size with the bytes actually after it. A declared size of 0 or
    0xFFFFFFFF (a streaming writer that never went back to fill it in) declares nothing.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
                return None
            block_align, tag, ds64_data = 0, None, None
            for _ in range(10_000):
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                start = fh.tell()
                if cid == b"ds64":
                    body = fh.read(16)
                    if len(body) == 16:
                        ds64_data = struct.unpack("<Q", body[8:16])[0]
                elif cid == b"fmt ":
                    body = fh.read(14)
                    if len(body) == 14:
                        tag = struct.unpack("<H", body[:2])[0]
                        block_align = struct.unpack("<H", body[12:14])[0]
                elif cid == b"data":
                    declared = csize
                    if csize == 0xFFFFFFFF and head[:4] == b"RF64" and ds64_data is not None:
                        declared = ds64_data
                    elif csize in (0, 0xFFFFFFFF):
                        return None
                    if tag not in _FRAME_PER_BLOCK or block_align <= 0:
                        return None
                    header, present = declared // block_align, max(0, size - start) // block_align
                    return (header, present) if present < header else None
                fh.seek(start + csize + (csize & 1))
    except (OSError, struct.error):
        return None
    return None


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if sr_in == sr_out:
        return wave
    return soxr.resample(wave, sr_in, sr_out, quality="HQ").astype(np.float32)


@dataclass(frozen=True)
class Preprocess:
    """The reference paper's preprocessing; set a step to ``None`` to switch it off.

    Order: trim silence (``trim_db`` below the loudest frame) -> cut to ``seconds`` ->
    pre-emphasis ``y[n] = x[n] - a x[n-1]`` -> peak-normalise -> zero-pad to ``seconds``.
    Cutting before normalising keeps the peak exactly at ``peak`` (a peak beyond the cut would
    otherwise be normalised and then thrown away); padding last keeps the padding exactly zero.
    """

    sample_rate: int = SAMPLE_RATE
    trim_db: float | None = 20.0
    preemphasis: float | None = 0.97
    peak: float | None = 0.95
    seconds: float | None = 8.0

    def __call__(self, wave: np.ndarray, pad: bool = True) -> tuple[np.ndarray, int]:
        """Return ``(processed, n_valid)``: ``n_valid`` samples are speech, the rest padding
        (none with ``pad=False``).

        The numpy implementation the exported runtime runs too (:func:`serbench.runtime.preprocess`),
        so training, evaluation and a deployed model folder preprocess identically."""
        return runtime.preprocess(wave, self.config(), pad)

    @property
    def length(self) -> int | None:
        return None if self.seconds is None else int(round(self.seconds * self.sample_rate))

    def config(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation; each step fires with its own probability.

    Applied after :class:`Preprocess` (so peak normalisation does not undo the gain) and only to
    training data. All randomness comes from the caller's ``numpy.random.Generator``, so a seeded
    run augments identically every time.
    """

    sample_rate: int = SAMPLE_RATE
    p_gain: float = 0.5
    gain_db: tuple[float, float] = (-18.0, 6.0)
    p_noise: float = 0.5
    noise_amplitude: tuple[float, float] = (0.001, 0.015)
    p_pitch: float = 0.3
    max_semitones: float = 2.0
    p_invert: float = 0.5

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        y = np.asarray(wave, dtype=np.float32).copy()
        if rng.random() < self.p_pitch:
            steps = float(rng.uniform(-self.max_semitones, self.max_semitones))
            y = librosa.effects.pitch_shift(y, sr=self.sample_rate, n_steps=steps).astype(np.float32)
        if rng.random() < self.p_gain:
            y *= np.float32(10.0 ** (rng.uniform(*self.gain_db) / 20.0))
        if rng.random() < self.p_noise:
            y += rng.normal(0.0, rng.uniform(*self.noise_amplitude), y.shape).astype(np.float32)
        if rng.random() < self.p_invert:
            y = -y
        return y

    def config(self) -> dict:
        return asdict(self)
