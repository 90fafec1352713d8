"""Audio in, block by block: a file is never loaded whole (a voice note may be an hour long)."""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .base import InferError
from .checks import header_problem


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
    problem = header_problem(int(f.samplerate), int(f.frames))   # before a sample is decoded
    if problem:
        f.close()
        raise InferError(f"{path}: {problem}")
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
