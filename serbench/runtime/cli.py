"""The command line, shared by ``serbench infer`` and the standalone ``infer.py`` of a model folder."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .note import Options, analyse_files, format_model, format_text
from .base import ENTRY_FILE, PACKAGE_DIR, InferError


def add_arguments(p: argparse.ArgumentParser, model_dir_optional: bool = False) -> None:
    if model_dir_optional:
        p.add_argument("inputs", nargs="+", metavar="[MODEL_DIR] AUDIO",
                       help="an exported model folder (default: the folder holding this script) and audio files")
    else:
        p.add_argument("model_dir", help="a folder written by `serbench export`")
        p.add_argument("audio", nargs="+", help="audio files (any libsndfile format, any rate/channels)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--no-vad", action="store_true", help="classify all audio, not only detected speech")
    p.add_argument("--window", type=float, default=8.0, help="window length in seconds (default 8.0)")
    p.add_argument("--hop", type=float, default=8.0, help="seconds between window starts (default 8.0)")
    p.add_argument("--min-speech", type=float, default=1.0,
                   help="a (last) window needs at least this many seconds of speech (default 1.0)")
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores available)")
    p.add_argument("--no-timeline", action="store_true", help="text output: overall result only")


def run(model_dir, audio: list[str], args) -> tuple[dict, int]:
    """The parsed command line -> :func:`analyse_files`."""
    opts = Options(vad=not args.no_vad, window=args.window, hop=args.hop, min_speech=args.min_speech)
    return analyse_files(model_dir, audio, opts, args.threads)


def print_results(doc: dict, args) -> None:
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(format_model(doc.get("model_card") or {}))
    for r in doc["results"]:
        if r["status"] == "error":
            print(f"{r['file']}: error: {r['message']}", file=sys.stderr)
        else:
            print(format_text(r, timeline=not args.no_timeline))


# The model folder's ``infer.py``: it puts the folder on the path and runs :func:`main` from the
# copy of this package that ``serbench export`` writes beside it (as ``serbench_runtime/``).
ENTRY_SCRIPT = f'''"""Emotion of long voice notes with this exported serbench model (see MODEL_CARD.md):

    python {ENTRY_FILE} [MODEL_DIR] AUDIO... [--json] [--no-vad] [--window 8] [--hop 8]

Needs only numpy, soundfile and onnxruntime (soxr is used for resampling when installed).
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from {PACKAGE_DIR}.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(default_model_dir=HERE))
'''


def main(argv: list[str] | None = None, default_model_dir: str | Path | None = None) -> int:
    """Standalone entry point: ``python infer.py [MODEL_DIR] AUDIO...`` (the model folder is
    ``default_model_dir``, the folder holding ``infer.py``, unless the first argument is one)."""
    p = argparse.ArgumentParser(prog="infer.py", description="Emotion of long voice notes with an exported "
                                "serbench model: VAD -> windows -> average of window probabilities.")
    add_arguments(p, model_dir_optional=True)
    args = p.parse_args(argv)
    inputs = list(args.inputs)
    if Path(inputs[0]).is_dir() or default_model_dir is None:
        model_dir = inputs.pop(0)
    else:
        model_dir = str(default_model_dir)
    if not inputs:
        p.error("no audio files given")
    try:
        doc, status = run(model_dir, inputs, args)
    except InferError as exc:
        print(f"infer.py: error: {exc}", file=sys.stderr)
        return 2
    print_results(doc, args)
    return status
