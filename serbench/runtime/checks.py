"""Audio that must not be scored: an implausible header (refused before decoding) and silence.

The rules live here, in the standalone runtime, because both sides need the very same ones: the
corpus scan and training loads (:mod:`serbench.audio`, :mod:`serbench.corpora.common`) and
``infer`` (:mod:`.reader`, :mod:`.note`), in serbench and in an exported model folder.

* **Header** (:func:`header_problem`): a sample rate below :data:`MIN_RATE` (4 kHz) or above
  :data:`MAX_RATE` (384 kHz) is not a recording but a damaged or hand-made header; it is refused
  from the header alone, before a sample is decoded. (A WAV claiming 1 Hz reads as 17 h of audio,
  and resampling it to 16 kHz needs gigabytes.) A caller that decodes a clip whole also passes
  ``max_seconds``: a corpus clip is an utterance, and one longer than :data:`CLIP_MAX_SECONDS`
  (1 h) is refused. ``infer`` reads block by block in bounded memory, so a long voice note is
  not limited.
* **Silence** (:class:`Level`, :func:`is_silent`): audio is silent when it does not vary: its RMS
  after removing its mean (its DC offset), i.e. its standard deviation, is below
  :data:`SILENCE_DBFS` = -80 dBFS (1e-4 of full scale, about three steps of 16-bit audio, so
  dithered digital silence, near -90 dBFS, is silent too). Digital silence (all zeros) and a
  constant DC offset have no variation at all, whatever the offset; the room tone a microphone
  picks up is normally well above the floor, and speech far above it. The mean is removed
  because a DC offset carries no sound, only a peak: a peak test calls 3 s of 0.5 "loud".
  Clips are judged whole (their mono mix), ``infer``'s windows each on their own.
"""
from __future__ import annotations

import math

import numpy as np

MIN_RATE, MAX_RATE = 4_000, 384_000   # Hz: telephone speech is 8 kHz; the fastest studio rate 384 kHz
CLIP_MAX_SECONDS = 3600.0             # a corpus utterance longer than this is a damaged header
SILENCE_DBFS = -80.0                  # mean-removed RMS below this (re full scale 1.0) is silence
SILENCE_RMS = 10.0 ** (SILENCE_DBFS / 20.0)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def header_problem(sample_rate: int, frames: int, max_seconds: float | None = None) -> str | None:
    """Why a header with this sample rate and frame count cannot be a recording, or None."""
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        return (f"implausible sample rate: the header says {sample_rate} Hz (a recording has "
                f"{MIN_RATE}-{MAX_RATE} Hz); the header is damaged, so the file was not decoded")
    seconds = frames / sample_rate
    if max_seconds is not None and seconds > max_seconds:
        return (f"implausibly long: the header says {_hours(seconds)} ({frames} frames at {sample_rate} Hz), "
                f"longer than the {_hours(max_seconds)} a clip may be; not decoded")
    return None


class Level:
    """The mean-removed RMS of audio fed block by block (bounded memory), and the silence rule.

    Plain float64 sums of ``x`` and ``x^2``: even for a DC offset at full scale the subtraction
    ``E[x^2] - E[x]^2`` errs by ~1e-15, far below the 1e-8 (-80 dBFS, squared) it is compared
    with, and a float64 block is summed where it lies, without a copy."""

    def __init__(self) -> None:
        self.n, self.s, self.ss = 0, 0.0, 0.0

    def add(self, x: np.ndarray) -> Level:
        d = np.asarray(x, np.float64).ravel()
        self.n += d.size
        self.s += float(d.sum())
        self.ss += float(np.einsum("i,i->", d, d))   # not np.dot: BLAS threads, slow on a busy machine
        return self

    @property
    def mean(self) -> float:
        return self.s / self.n if self.n else 0.0

    @property
    def rms(self) -> float:
        """Standard deviation: the RMS after removing the mean."""
        if not self.n:
            return 0.0
        return math.sqrt(max(0.0, self.ss / self.n - self.mean ** 2))

    @property
    def dbfs(self) -> float:
        return 20.0 * math.log10(self.rms) if self.rms > 0 else -math.inf

    @property
    def silent(self) -> bool:
        """The rule: some samples, and a mean-removed RMS below :data:`SILENCE_DBFS`."""
        return self.n > 0 and self.rms < SILENCE_RMS

    def message(self) -> str:
        """How little it varies, in words (for a silent signal's skip reason or status)."""
        if self.rms == 0.0:
            what = "digital silence" if self.mean == 0.0 else f"a constant DC offset of {self.mean:+.4g}"
            return f"every sample is the same ({what})"
        return (f"{self.dbfs:.1f} dBFS after removing its mean ({self.mean:+.4g}), below the "
                f"{SILENCE_DBFS:.0f} dBFS floor")


def silence_reason(level: Level) -> str:
    """A silent clip's skip reason (the corpus scan)."""
    return f"silent (no variation): {level.message()}; nothing to score"


def is_silent(wave: np.ndarray) -> bool:
    """Whether ``wave`` is silence by :class:`Level`'s rule (the one rule, for clips and windows)."""
    return Level().add(wave).silent
