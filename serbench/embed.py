"""Per-utterance pooled per-layer embeddings, computed once and cached on disk.

Embedding is the slow step (a forward pass per utterance), and its result depends only on the
encoder (model, weights, recipe artefact), the preprocessing and the audio bytes. So the cache key
is exactly those: a second protocol over the same corpora, a resumed run, or another fold reuses
every embedding already made, and changing any of them (a re-encoded file, a different trim
threshold) can never serve a stale one: the audio is hashed from its bytes on every call, never
remembered by size and mtime (:func:`file_hashes`). A damaged entry (cut short, not an array of
the right kind) is computed again, with a note saying so. Files are written atomically (:mod:`serbench.atomic`:
temp file, fsync, rename), so a killed run leaves no half-written entry and two runs can share
the cache; a full disk or read-only cache folder ends in one error naming the folder, with no
temporary file left.

Around the encoder, :func:`embed_files` is a pipeline: the next clips are decoded and
preprocessed, and finished embeddings written (an fsync each), on background threads while the
encoder runs, so the encoder (the step that uses every core) waits for neither. The decoding runs
at low priority, in the gaps the encoder leaves, and is never waited for (:func:`low_priority`).
Its results, and its errors, are those of the serial path (``prefetch=0``), in the same order.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol as TypingProtocol

import numpy as np
from tqdm import tqdm

from serbench import atomic, audio, paths, runtime
from serbench.progress import LOG
from serbench.manifest import audio_hash

MIN_SAMPLES = audio.SAMPLE_RATE // 2   # shorter speech is zero-padded to 0.5 s before the encoder
PREFETCH = 4                           # clips decoded ahead of the encoder (beyond one per worker)
THREAD_PREFIX = "serbench-embed"       # names the pipeline's threads (none outlives embed_files)


class Encoder(TypingProtocol):
    """Anything that turns one 16 kHz waveform into pooled per-layer embeddings (n_layers, dim)."""

    def embed(self, wave: np.ndarray) -> np.ndarray: ...


def file_hashes(files: list[str]) -> list[str]:
    """The cache key of each audio file: the sha256 of its bytes (:func:`serbench.manifest.audio_hash`,
    the manifest's content identity too), read every time.

    Not remembered by (path, size, mtime): a clip rewritten with the same size and mtime (a
    copy with ``cp -p``, a tool that restores timestamps) was then served its old embedding.
    Reading the bytes costs little beside embedding them: all 1,440 RAVDESS clips (53 MB of
    16 kHz FLAC) hash in 0.06 s from the page cache and 0.27 s from disk, where the stat-keyed
    lookup took 0.02 s (measured once, on 2 shared cores).
    """
    return [audio_hash(f) for f in files]


def speech_segment(path: str, preprocess: audio.Preprocess) -> np.ndarray:
    """What every encoder is given for one utterance: the preprocessed speech, without the padding
    (so a short clip's mean is not diluted by zeros), zero-padded only up to ``MIN_SAMPLES``."""
    y, n_valid = preprocess(audio.load(path, preprocess.sample_rate), pad=False)
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


def low_priority() -> None:
    """Lower the calling thread to nice 19 (Linux, where the nice value is per thread; elsewhere it
    would renice the whole process, so nothing is done). For the threads that decode ahead of an
    encoder which already uses every core: at equal priority the scheduler shares the cores
    fairly, so each millisecond of decoding preempts an onnxruntime worker and stalls the whole
    parallel kernel; at nice 19 the decode mostly fills the gaps between kernels. Not
    ``SCHED_IDLE``: on a machine kept busy by other work it starves outright (measured with two
    busy processes beside: pipeline / bare 0.65, against 0.94 at nice 19 and 0.93 serial), while
    nice 19 still gets ~1.5 % of a contended core. Its consumer never waits for it anyway
    (:func:`_in_order`)."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 19)   # 0: this thread (Linux)
        except OSError:
            pass


def _in_order(pool: ThreadPoolExecutor, fn, items: list[int], ahead: int, wait: bool = True):
    """``fn(item)`` for each item, in order, run on ``pool`` at most ``ahead`` items before the
    consumer takes them: the look-ahead that keeps memory bounded. An exception is raised when its
    item's turn comes, so everything before it is consumed exactly as on the serial path.
    ``wait=False``: an item the pool has not finished when its turn comes is computed by the
    consumer itself (``fn`` must be pure), so a low-priority pool that falls behind on a busy
    machine costs at most the serial path's time, never a wait."""
    pending: deque = deque()

    def take():
        item, future = pending.popleft()
        if wait or future.done():
            return future.result()
        future.cancel()
        return fn(item)

    try:
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) > ahead:
                yield take()
        while pending:
            yield take()
    finally:
        for _, f in pending:
            f.cancel()


def _settle(writes: deque, keep: int) -> None:
    """Wait for queued cache writes until at most ``keep`` remain, raising the first that failed."""
    while writes and (len(writes) > keep or writes[0].done()):
        writes.popleft().result()


def _cache(encoder_key: str, preprocess: audio.Preprocess, cache_root: Path | None = None) -> Path:
    """The cache folder of one encoder + preprocessing (its ``key.json`` written once)."""
    root = (cache_root or paths.home() / "cache" / "embeddings") / cache_key(encoder_key, preprocess)
    atomic.makedirs(root, "the embedding cache folder")
    if not (root / "key.json").is_file():
        key = json.dumps({"encoder": encoder_key, "preprocess": preprocess.config()})
        atomic.write_text(root / "key.json", key, what="embedding cache key")
    return root


def _targets(root: Path, files: list[str]) -> list[Path]:
    return [root / d[:2] / f"{d}.npy" for d in file_hashes(files)]


def _cached(target: Path) -> tuple[np.ndarray | None, str | None]:
    """``(embedding, None)`` from a cache entry, ``(None, None)`` when there is none, and
    ``(None, why)`` when it is damaged (cut short, not an .npy, not a float32 (layers, dim) array
    of finite numbers): such an entry is computed again and overwritten. Never unpickled."""
    try:
        emb = np.load(target, allow_pickle=False)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, EOFError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if emb.dtype != np.float32 or emb.ndim != 2 or not emb.size:
        return None, f"holds a {emb.dtype} array of shape {emb.shape}, not float32 (layers, dim)"
    if not np.isfinite(emb).all():
        return None, "holds NaN or inf"
    return emb, None


def prime(files: list[str], X: np.ndarray, encoder_key: str, preprocess: audio.Preprocess,
          cache_root: Path | None = None) -> int:
    """Put embeddings made elsewhere (``X[i]`` of ``files[i]``, e.g. by a sweep task on another
    node) into this machine's cache, where it lacks them; how many were added. The key is the
    same as :func:`embed_files`' (the audio's bytes), so the files must be readable here."""
    added = 0
    for f, target, emb in zip(files, _targets(_cache(encoder_key, preprocess, cache_root), files), X):
        if _cached(target)[0] is None:   # absent, or damaged
            buf = io.BytesIO()
            np.save(buf, np.asarray(emb, np.float32))
            atomic.write_bytes(target, buf.getvalue(), what=f"the cached embedding of {f}")
            added += 1
    return added


def embed_files(files: list[str], encoder: Encoder, encoder_key: str,
                preprocess: audio.Preprocess | None = None, cache_root: Path | None = None,
                desc: str = "embedding", progress: bool = True,
                prefetch: int = PREFETCH) -> tuple[np.ndarray, dict]:
    """Embeddings of ``files`` stacked as (n, n_layers, dim) float32, plus cache statistics.

    Each file is turned into its :func:`speech_segment` and embedded, unless the cache already
    holds it. With ``prefetch`` > 0 this is a pipeline, so the encoder never waits for audio or
    disk: background threads decode and preprocess up to ``prefetch`` clips (plus one per worker)
    ahead of the encoder, and one writer thread saves embeddings to the cache behind it.
    Single-threaded encoders embed several clips at once in those threads (:func:`workers_for`).
    ``prefetch=0`` is the serial path (decode, embed, save in turn on the calling thread). The
    result does not depend on either (each clip is embedded on its own, in the same order), nor do
    errors: an unreadable clip raises its :class:`~serbench.audio.AudioError` when its turn comes,
    after every clip before it was embedded and cached; no thread outlives the call.
    """
    preprocess = preprocess or audio.Preprocess()
    root = _cache(encoder_key, preprocess, cache_root)
    targets = _targets(root, files)
    out: list = []
    damaged = []
    for f, t in zip(files, targets):
        emb, why = _cached(t)
        out.append(emb)
        if why:
            damaged.append(f"{f} ({t.name}: {why})")
    if damaged:
        print(f"rebuilt: {len(damaged)} damaged cached embedding(s) in {root} are computed again "
              f"(first: {damaged[0]})", file=sys.stderr)
    missing = [i for i, e in enumerate(out) if e is None]
    hits = len(files) - len(missing)

    def segment(i: int) -> np.ndarray:
        return speech_segment(files[i], preprocess)

    def embedding(i: int, wave: np.ndarray) -> np.ndarray:
        emb = np.asarray(encoder.embed(wave), dtype=np.float32)
        if emb.ndim != 2:
            raise ValueError(f"encoder {encoder_key} returned shape {emb.shape} for {files[i]}; "
                             "want (layers, dim)")
        return emb

    def named(fn, what: str):
        """``fn(i, ...)`` whose exceptions name the file (a note; type and message unchanged)."""
        def call(i: int, *args):
            try:
                return fn(i, *args)
            except Exception as exc:
                if files[i] not in str(exc):
                    exc.add_note(f"while {what} {files[i]}")
                raise
        return call

    def save(i: int, emb: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, emb)
        atomic.write_bytes(targets[i], buf.getvalue(), what=f"the cached embedding of {files[i]}")

    workers = workers_for(encoder) if len(missing) > 1 else 1
    parallel = workers > 1  # the encoder runs in the pool, one clip per worker; else on this thread
    prepare = named(lambda i: embedding(i, segment(i)), "embedding") if parallel else named(segment, "decoding")
    finish = (lambda i, x: x) if parallel else named(embedding, "embedding")
    if progress and files and not missing and desc:
        LOG.info("%s: all %d cached", desc, len(files))   # said once, not an empty bar
    bar = tqdm(total=len(missing), desc=desc, unit="utt", disable=not progress or not missing, leave=False)
    if prefetch <= 0 or not missing:
        with bar:
            for i in missing:
                out[i] = emb = finish(i, prepare(i))
                save(i, emb)
                bar.update()
    else:
        # Decoding ahead runs at low priority where the encoder itself uses every core; a pool
        # of single-threaded encoders is the main work, and runs at normal priority.
        pool = ThreadPoolExecutor(workers, thread_name_prefix=THREAD_PREFIX,
                                  initializer=None if parallel else low_priority)
        writer = ThreadPoolExecutor(1, thread_name_prefix=THREAD_PREFIX)
        writes: deque = deque()
        ahead = prefetch + workers
        results = _in_order(pool, lambda i: (i, prepare(i)), missing, ahead, wait=parallel)
        try:
            with bar:
                for i, x in results:
                    out[i] = emb = finish(i, x)
                    writes.append(writer.submit(save, i, emb))
                    _settle(writes, ahead)
                    bar.update()
            _settle(writes, 0)
        finally:
            results.close()
            pool.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True)   # embeddings already made are still cached, as on the serial path
    stats = {"utterances": len(files), "cache_hits": hits, "computed": len(files) - hits,
             "cache": str(root)}
    return (np.stack(out) if out else np.zeros((0, 0, 0), np.float32)), stats
