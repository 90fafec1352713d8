"""Audio in: decode, downmix, resample to 16 kHz, then the reference paper's preprocessing.

Decoding is soundfile (wav, flac, ogg), resampling soxr (a real band-limited resampler, not
interpolation), trimming librosa. The preprocessing steps are a frozen dataclass so that their
settings can be hashed into cache keys and stored with every result.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import librosa
import numpy as np
import scipy.signal
import soundfile as sf
import soxr

from serbench.errors import SerbenchError

SAMPLE_RATE = 16_000


class AudioError(SerbenchError):
    """A file that cannot be decoded; the message names the file and the reason."""


def load(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate``.

    Channels are averaged (not just the first taken) so a stereo recording keeps both talkers'
    energy; any input rate is resampled with soxr's high-quality filter.
    """
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{path}: cannot decode audio: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no audio frames (zero-length audio)")
    return resample(data.mean(axis=1), sr, sample_rate)


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

    def __call__(self, wave: np.ndarray) -> tuple[np.ndarray, int]:
        """Return ``(processed, n_valid)``: ``n_valid`` samples are speech, the rest padding."""
        y = np.asarray(wave, dtype=np.float32)
        if self.trim_db is not None and y.size:
            y, _ = librosa.effects.trim(y, top_db=self.trim_db)
        n = self.length
        if n is not None:
            y = y[:n]
        if self.preemphasis is not None and y.size:
            y = scipy.signal.lfilter([1.0, -self.preemphasis], [1.0], y).astype(np.float32)
        if self.peak is not None and y.size:
            top = float(np.max(np.abs(y)))
            if top > 0:
                y = (y * (self.peak / top)).astype(np.float32)
        n_valid = int(y.size)
        if n is not None and y.size < n:
            y = np.pad(y, (0, n - y.size))
        return y.astype(np.float32), n_valid

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
