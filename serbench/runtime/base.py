"""What every runtime module shares: the model folder's file names, the graph's input and output
output name, the sample rate, and the one error type.

Inside serbench the error is a :class:`serbench.errors.SerbenchError`, so the CLI prints it without a
traceback; in an exported model folder serbench is not installed and it is a plain exception.
"""
from __future__ import annotations

try:
    from serbench.errors import SerbenchError as _ErrorBase
except ImportError:  # pragma: no cover - exercised in the standalone model folder
    _ErrorBase = Exception

SAMPLE_RATE = 16_000
MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.json"
PREPROCESS_FILE = "preprocess.json"
VAD_FILE = "vad/silero_vad_16k_sequence.onnx"
ENTRY_FILE = "infer.py"                  # the folder's command line
PACKAGE_DIR = "serbench_runtime"         # the copy of this package beside it
OUTPUT_NAME = "probabilities"  # the inputs are the backbone's: features.input_names


class InferError(_ErrorBase):
    """Bad input (an unreadable file, a folder that is not a model): printed without a traceback."""
