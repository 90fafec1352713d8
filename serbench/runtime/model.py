"""The exported model: one onnxruntime session over the merged graph, and the session factory
that every onnxruntime session in serbench is opened through (threads, providers, log level,
telemetry set in one place)."""
from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from .base import (LABELS_FILE, MODEL_FILE, OUTPUT_NAME, PREPROCESS_FILE, SAMPLE_RATE,
                   InferError)
from .features import graph_inputs
from .preprocess import model_input


_THREADS: ContextVar[int | None] = ContextVar("serbench_threads", default=None)


def default_threads() -> int:
    """The cores this process may use, or what :func:`using_threads` set for the block in progress."""
    if _THREADS.get():
        return int(_THREADS.get())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def using_threads(n: int | None):
    """Inside the block, :func:`default_threads` is ``n`` (``None``: unchanged): a sweep task that
    was given ``n`` CPUs by Ray uses ``n`` threads, not the whole machine's."""
    token = _THREADS.set(int(n)) if n else None
    try:
        yield
    finally:
        if token is not None:
            _THREADS.reset(token)


_WARNED = False


def cuda_available() -> bool:
    """Whether onnxruntime can run on a CUDA device here: its CUDA provider is installed (the
    onnxruntime-gpu package) and ``CUDA_VISIBLE_DEVICES`` does not hide every device."""
    import onnxruntime as ort

    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def session(path, threads: int, cuda: bool = False):
    """An onnxruntime session (CPU; CUDA first when ``cuda``): ``threads`` intra-op threads, idle
    workers sleeping, quiet logs, and onnxruntime's telemetry off (``ORT_DISABLE_TELEMETRY``, set
    when this package is imported; see its ``__init__``), so nothing here, or in serbench, which
    opens every session through this, makes a network attempt. The one place sessions are opened."""
    import onnxruntime as ort

    from . import TELEMETRY_LATCHED_ON

    global _WARNED
    if TELEMETRY_LATCHED_ON and not _WARNED:
        _WARNED = True
        warnings.warn("onnxruntime was imported before serbench without ORT_DISABLE_TELEMETRY=1, so its "
                      "telemetry uploader runs in this process (it contacts Microsoft's event host); set "
                      "ORT_DISABLE_TELEMETRY=1 before importing onnxruntime", RuntimeWarning, stacklevel=2)
    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    # Idle workers sleep instead of spinning. Spinning bought nothing measurable for one session
    # alone (static-int8 DistilHuBERT, 8 s clip, 2 threads: 124 ms either way), but a session's
    # spinning workers keep burning the cores after run() returns: interleaved timing (bench)
    # then charged them to the next session (static-int8 139 -> 123 ms), and they compete with
    # the embedding pipeline's decode thread.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = (["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), so, providers=providers)


class EmotionModel:
    """An exported model folder: one ONNX graph (the backbone's input -> class probabilities), its
    labels and its preprocessing settings (the input frontend among them)."""

    def __init__(self, model_dir: str | os.PathLike, threads: int | None = None):
        self.dir = Path(model_dir)
        try:
            self.labels = list(json.loads((self.dir / LABELS_FILE).read_text())["classes"])
            self.preprocess = json.loads((self.dir / PREPROCESS_FILE).read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise InferError(f"{self.dir}: not an exported serbench model folder "
                             f"(needs {MODEL_FILE}, {LABELS_FILE}, {PREPROCESS_FILE}): {exc}") from exc
        if not (self.dir / MODEL_FILE).is_file():
            raise InferError(f"{self.dir}: no {MODEL_FILE}")
        self.card = {}
        if (self.dir / "model_card.json").is_file():
            try:
                self.card = json.loads((self.dir / "model_card.json").read_text())
            except (OSError, ValueError) as exc:
                raise InferError(f"{self.dir / 'model_card.json'}: damaged model card, not valid JSON ({exc}); "
                                 "the folder was cut short or edited: export it again") from exc
        self.threads = threads or default_threads()
        try:
            self.session = session(self.dir / MODEL_FILE, self.threads)
        except ImportError:
            raise
        except Exception as exc:   # onnxruntime's own error types (InvalidProtobuf, Fail ...)
            raise InferError(f"{self.dir / MODEL_FILE}: onnxruntime cannot load it ({type(exc).__name__}: "
                             f"{str(exc).strip()[:300]}); the file is damaged or cut short: export it again") from exc
        self.sample_rate = int(self.preprocess.get("sample_rate", SAMPLE_RATE))
        if self.sample_rate != SAMPLE_RATE:
            raise InferError(f"{self.dir}: model expects {self.sample_rate} Hz; this runtime feeds {SAMPLE_RATE}")

    @property
    def clip_seconds(self) -> float | None:
        return self.preprocess.get("seconds")

    def probabilities(self, window: np.ndarray) -> np.ndarray:
        """One window of raw 16 kHz audio -> class probabilities (the training preprocessing applied)."""
        x = model_input(window, self.preprocess)
        feeds = graph_inputs(x, self.preprocess.get("frontend"))   # absent in folders exported before it: waveform
        return self.session.run([OUTPUT_NAME], feeds)[0][0].astype(np.float64)
