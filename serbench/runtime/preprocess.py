"""The training preprocessing in numpy (trim, cut, pre-emphasis, peak, pad).

This is the one implementation: ``serbench.audio.Preprocess`` calls it for training and
evaluation, and an exported model folder runs the very same code on each window, so the two can
not drift apart. It needs neither librosa nor scipy (the folder must run on numpy alone);
:func:`trim_interval` reproduces ``librosa.effects.trim`` exactly (tested against librosa).
"""
from __future__ import annotations

import numpy as np

from .base import SAMPLE_RATE


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


def preprocess(wave: np.ndarray, cfg: dict, pad: bool = True) -> tuple[np.ndarray, int]:
    """``serbench.audio.Preprocess`` without librosa/scipy: ``(processed, n_valid)``.

    Trim -> cut to ``seconds`` -> pre-emphasis -> peak-normalise -> zero-pad to ``seconds``
    (``pad=False``: not padded, for callers that keep only the ``n_valid`` speech samples anyway).
    """
    y = src = np.asarray(wave, np.float32)
    if cfg.get("trim_db") is not None and y.size:
        a, b = trim_interval(y, float(cfg["trim_db"]))
        y = y[a:b]
    n = None if cfg.get("seconds") is None else int(round(cfg["seconds"] * cfg.get("sample_rate", SAMPLE_RATE)))
    if n is not None:
        y = y[:n]
    if cfg.get("preemphasis") is not None and y.size:
        a = float(cfg["preemphasis"])   # in float64, then rounded: bit for bit scipy.signal.lfilter([1, -a], [1], y)
        x = y.astype(np.float64)
        y = np.concatenate([x[:1], x[1:] - a * x[:-1]]).astype(np.float32)
    if cfg.get("peak") is not None and y.size:
        top = float(np.max(np.abs(y)))
        if top > 0:
            y = (y * (cfg["peak"] / top)).astype(np.float32, copy=False)
    n_valid = int(y.size)
    if pad and n is not None and y.size < n:
        y = np.pad(y, (0, n - y.size))
    # a copy only where no step made one (the caller's buffer is never handed back)
    return (y.copy() if np.may_share_memory(y, src) else y), n_valid


def model_input(wave: np.ndarray, cfg: dict) -> np.ndarray:
    """What the encoder sees for one window: the preprocessed speech part (padding cut), at
    least ``min_samples`` long (zero-padded), as ``serbench.embed`` embeds during evaluation."""
    y, n_valid = preprocess(wave, cfg, pad=False)
    m = int(cfg.get("min_samples", SAMPLE_RATE // 2))
    y = y[: max(n_valid, m)]
    return np.pad(y, (0, m - y.size)) if y.size < m else y
