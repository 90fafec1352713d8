"""Per-utterance pooled per-layer embeddings, computed once and cached on disk.

Embedding is the slow step (a forward pass per utterance), and its result depends only on the
encoder (model, weights, recipe artefact), the preprocessing and the audio bytes. So the cache key
is exactly those: a second protocol over the same corpora, a resumed run, or another fold reuses
every embedding already made, and changing any of them (a re-encoded file, a different trim
threshold) can never serve a stale one. Files are written atomically (:mod:`serbench.atomic`:
temp file, fsync, rename), so a killed run leaves no half-written entry and two runs can share
the cache; a full disk or read-only cache folder ends in one error naming the folder, with no
temporary file left.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Protocol as TypingProtocol

import numpy as np
from tqdm import tqdm

from serbench import atomic, audio, runtime, paths
from serbench.errors import SerbenchError

MIN_SAMPLES = audio.SAMPLE_RATE // 2   # shorter speech is zero-padded to 0.5 s before the encoder


class Encoder(TypingProtocol):
    """Anything that turns one 16 kHz waveform into pooled per-layer embeddings (n_layers, dim)."""

    def embed(self, wave: np.ndarray) -> np.ndarray: ...


class FileHashes:
    """sha256 of audio files, remembered by (path, size, mtime) so each file is read once."""

    def __init__(self, db: Path):
        atomic.makedirs(db.parent, "the cache folder")
        self.db = db
        with self._errors("create"), closing(self._connect()) as con, con:
            con.execute("CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER, "
                        "mtime INTEGER, sha256 TEXT)")

    @contextmanager
    def _errors(self, action: str):
        """SQLite failures (disk full, read-only folder) as one error naming the hash cache."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            name = getattr(exc, "sqlite_errorname", None) or ""
            if name == "SQLITE_FULL" or "disk is full" in str(exc):
                why = "no space left on the device (disk full)"
            elif not os.access(self.db.parent, os.W_OK):
                why = f"{self.db.parent} is not writable (a read-only file system?)"
            else:
                why = str(exc)
            raise SerbenchError(f"cannot {action} the file-hash cache {self.db}: {why}"
                                + (f" [{name}]" if name else "") + "; point SERBENCH_HOME at a writable folder "
                                "with free space") from exc

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    def __call__(self, files: list[str]) -> list[str]:
        out = []
        with self._errors("update"), closing(self._connect()) as con, con:
            for f in files:
                st = os.stat(f)
                row = con.execute("SELECT sha256 FROM hashes WHERE path=? AND size=? AND mtime=?",
                                  (f, st.st_size, st.st_mtime_ns)).fetchone()
                if row is None:
                    digest = hashlib.sha256(Path(f).read_bytes()).hexdigest()
                    con.execute("INSERT OR REPLACE INTO hashes VALUES (?,?,?,?)",
                                (f, st.st_size, st.st_mtime_ns, digest))
                    row = (digest,)
                out.append(row[0])
        return out


def speech_segment(path: str, preprocess: audio.Preprocess) -> np.ndarray:
    """What every encoder is given for one utterance: the preprocessed speech, without the padding
    (so a short clip's mean is not diluted by zeros), zero-padded only up to ``MIN_SAMPLES``."""
    y, n_valid = preprocess(audio.load(path, preprocess.sample_rate))
    y = y[:n_valid]
    return y if y.size >= MIN_SAMPLES else np.pad(y, (0, MIN_SAMPLES - y.size))


def cache_key(encoder_key: str, preprocess: audio.Preprocess) -> str:
    """The part of the key shared by all utterances: encoder identity + preprocessing settings."""
    payload = json.dumps({"encoder": encoder_key, "preprocess": preprocess.config()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def workers_for(encoder: Encoder) -> int:
    """Clips embedded at once: one per core for an encoder that runs on one thread (openSMILE, whose
    native extractor releases the GIL); one for encoders that already use every core (torch,
    onnxruntime), where more would only contend."""
    if getattr(encoder, "threads", None) != 1:
        return 1
    return max(1, min(runtime.default_threads(), 8))


def embed_files(files: list[str], encoder: Encoder, encoder_key: str,
                preprocess: audio.Preprocess | None = None, cache_root: Path | None = None,
                desc: str = "embedding", progress: bool = True) -> tuple[np.ndarray, dict]:
    """Embeddings of ``files`` stacked as (n, n_layers, dim) float32, plus cache statistics.

    Each file is turned into its :func:`speech_segment` and embedded, unless the cache already
    holds it. Single-threaded encoders embed several clips at once (:func:`workers_for`); the
    result does not depend on it (each clip is embedded on its own).
    """
    preprocess = preprocess or audio.Preprocess()
    root = (cache_root or paths.home() / "cache" / "embeddings") / cache_key(encoder_key, preprocess)
    atomic.makedirs(root, "the embedding cache folder")
    key = json.dumps({"encoder": encoder_key, "preprocess": preprocess.config()})
    if not (root / "key.json").is_file():
        atomic.write_text(root / "key.json", key, what="embedding cache key")
    digests = FileHashes(paths.home() / "cache" / "file_hashes.sqlite")(files)
    targets = [root / d[:2] / f"{d}.npy" for d in digests]
    out: list = [np.load(t) if t.is_file() else None for t in targets]
    missing = [i for i, e in enumerate(out) if e is None]
    hits = len(files) - len(missing)

    def compute(i: int) -> np.ndarray:
        return np.asarray(encoder.embed(speech_segment(files[i], preprocess)), dtype=np.float32)

    workers = workers_for(encoder) if len(missing) > 1 else 1
    with ThreadPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        results = pool.map(compute, missing) if pool else map(compute, missing)
        for i, emb in tqdm(zip(missing, results), total=len(missing), desc=desc, unit="utt",
                           disable=not progress, leave=False):
            if emb.ndim != 2:
                raise ValueError(f"encoder {encoder_key} returned shape {emb.shape} for {files[i]}; "
                                 "want (layers, dim)")
            buf = io.BytesIO()
            np.save(buf, emb)
            atomic.write_bytes(targets[i], buf.getvalue(), what=f"the cached embedding of {files[i]}")
            out[i] = emb
    stats = {"utterances": len(files), "cache_hits": hits, "computed": len(files) - hits,
             "cache": str(root)}
    return (np.stack(out) if out else np.zeros((0, 0, 0), np.float32)), stats
