"""serbench: benchmark and evaluate compressed speech-emotion-recognition models."""

__version__ = "0.1.0"

import serbench.runtime  # noqa: E402,F401  first: it switches onnxruntime's telemetry off before anything imports onnxruntime

from serbench.api import analyse, bench, compare, export, results, run, sweep, tune  # noqa: E402  (the front door; see serbench/api.py)

__all__ = ["__version__", "analyse", "bench", "compare", "export", "results", "run", "sweep", "tune"]
