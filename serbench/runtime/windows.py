"""Cutting the speech of a note into fixed windows, in one pass with bounded memory."""
from __future__ import annotations

import numpy as np

from .base import InferError


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
