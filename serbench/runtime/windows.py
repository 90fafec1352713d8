"""Windows on the note's own timeline, in one pass with bounded memory.

A window is a span of the *file*: ``[k * hop, k * hop + window)`` in 16 kHz samples. With VAD, the
samples in it that are not speech are left out (masked), and nothing from outside the span is
glued in: so a window never straddles a minute of silence to join two distant utterances, and its
time range is the part of the file it speaks for. Without VAD every sample is speech and a window
is exactly that span of audio.
"""
from __future__ import annotations

import numpy as np

from .base import InferError


def plan_windows(total: int, window: int, hop: int, min_len: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` over ``total`` samples of the file.

    Full windows start at ``0, hop, 2*hop, ...`` while they fit. If audio is left after the last
    full window (or there was none), one more window starts at the next hop position and runs to
    the end; it is kept when it spans at least ``min_len`` samples, else dropped. (A window is then
    classified only if it holds at least ``min_len`` samples of speech: :class:`Windower`.)
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
    """:func:`plan_windows` on the file's timeline, streaming: speech arrives in pieces with its
    positions in the (16 kHz) file; a window leaves as soon as no more speech inside it can
    arrive (``ready(decided)``), with the speech samples that fell inside it; only samples a
    later window still needs are kept."""

    def __init__(self, window: int, hop: int, min_len: int):
        plan_windows(1, window, hop, min_len)  # validates
        self.window, self.hop, self.min_len = window, hop, min_len
        self.buf = np.zeros(0, np.float32)
        self.pos = np.zeros(0, np.int64)
        self.next_start = 0     # file position where the next window starts
        self.max_buffered = 0

    def push(self, samples: np.ndarray, positions: np.ndarray) -> None:
        """Add speech samples and their (increasing) file positions."""
        if len(samples) != len(positions):
            raise InferError(f"{len(samples)} speech samples came with {len(positions)} positions")
        self.buf = np.concatenate([self.buf, np.asarray(samples, np.float32)])
        self.pos = np.concatenate([self.pos, np.asarray(positions, np.int64)])
        self.max_buffered = max(self.max_buffered, self.buf.size)

    def ready(self, decided: int):
        """Yield ``(start, end, wave, positions)`` for each window that ends at or before file
        position ``decided`` (all speech before it has been pushed)."""
        while self.next_start + self.window <= decided:
            yield self._take(self.next_start, self.next_start + self.window)
            self.next_start += self.hop
            self._drop()

    def flush(self, total: int):
        """The file is ``total`` samples long: yield the windows :func:`plan_windows` has left."""
        yield from self.ready(total)
        if any(a == self.next_start for a, _ in plan_windows(total, self.window, self.hop, self.min_len)):
            yield self._take(self.next_start, total)

    def _take(self, a: int, b: int):
        inside = (self.pos >= a) & (self.pos < b)
        return a, b, self.buf[inside].copy(), self.pos[inside].copy()

    def _drop(self) -> None:
        keep = self.pos >= self.next_start
        if not keep.all():
            self.buf, self.pos = self.buf[keep], self.pos[keep]
