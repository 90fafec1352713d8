"""Streaming resampling to 16 kHz: soxr when installed (as training), else a numpy polyphase twin."""
from __future__ import annotations

import math

import numpy as np

from .base import SAMPLE_RATE


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
