"""Long voice notes -> emotion: read in blocks -> 16 kHz -> VAD -> 8 s windows -> classify -> average.

This package is the runtime of a ``serbench export`` model folder, and it is deliberately
standalone: it imports only numpy, soundfile and onnxruntime (plus soxr when it is installed, for
resampling; without it a numpy polyphase resampler is used), never torch, librosa or the rest of
serbench, and its modules import each other relatively. ``serbench export`` copies the package
whole into the model folder (as ``serbench_runtime/``, beside an ``infer.py`` entry script), so a
folder runs on a machine holding just those three packages::

    python MODEL_DIR/infer.py note.ogg [--json] [--no-vad] [--window 8] [--hop 8]

Inside serbench the same code serves ``serbench infer``, opens every onnxruntime session
(:func:`session`), and preprocesses audio for training (``serbench.audio.Preprocess`` calls
:func:`preprocess`), so what a model was trained on and what its folder runs cannot drift apart.

One module per stage of the pipeline, one bounded-memory pass over the file:

* ``checks``: what is refused before decoding (a sample rate no recording has) and what is
  silence (no variation: the RMS after removing the mean below -80 dBFS), the rules serbench's
  corpus scan uses too.
* ``reader``: ``soundfile`` blocks of ``block_seconds`` at the file's own rate, channels averaged
  (as training did). A file is never loaded whole.
* ``resample``: to 16 kHz block by block (a streaming resampler carries its state across blocks).
* ``vad`` (optional): Silero VAD's ONNX model (``vad/silero_vad_16k_sequence.onnx`` in the model
  folder, copied from the silero-vad PyPI package at export; no torch needed) gives a speech
  probability per 32 ms frame, and :class:`SpeechSegmenter` turns them into speech segments with
  exactly silero's ``get_speech_timestamps`` rules (threshold 0.5, exit threshold 0.35, >= 250 ms
  speech, >= 100 ms silence to end a segment, 30 ms padding), but streaming: speech is passed on as
  soon as it is certain, so neither a long silence nor a long stretch of speech is held in memory.
* ``windows``: the *file's timeline* is cut into ``window`` s spans every ``hop`` s
  (:func:`plan_windows`); with VAD a span's non-speech is left out, and nothing from outside the
  span is joined in, so a window never glues distant utterances together. A span is classified
  when it holds at least ``min_speech`` s of speech.
* ``preprocess`` + ``features`` + ``model``: each window gets the model's training preprocessing
  (trim 20 dB below the loudest frame, pre-emphasis, peak-normalise), its speech part is embedded
  (padding left out, as serbench embeds during evaluation) through the backbone's input frontend
  (the waveform itself, or Whisper's log-mel), and the exported graph gives probabilities.
* ``note``: probabilities averaged over windows (the paper's temporal pooling) give the note's
  emotion; the per-window timeline keeps each window's time range in the *original* file.
* ``cli``: the command line of both ``serbench infer`` and the folder's ``infer.py``.
"""
import os as _os
import sys as _sys

# onnxruntime >= 1.29 has native telemetry on Linux and macOS (1DS, uploading to Microsoft; it makes
# DNS lookups a few seconds after a session opens, measured with 1.32 under strace), and only
# ORT_DISABLE_TELEMETRY=1 set *before onnxruntime is imported* turns it off:
# disable_telemetry_events() does not stop the uploader. So it is set here, before any module of
# this package (or of serbench, whose package imports this one first) can import onnxruntime. A
# value the user set is kept; an onnxruntime imported earlier without it is warned about at the
# first session (:func:`session`), since nothing can switch it off in that process any more.
TELEMETRY_LATCHED_ON = "onnxruntime" in _sys.modules and "ORT_DISABLE_TELEMETRY" not in _os.environ
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .note import Options, Stats, analyse, analyse_files, format_text
from .base import (ENTRY_FILE, LABELS_FILE, MODEL_FILE, OUTPUT_NAME, PACKAGE_DIR, PREPROCESS_FILE,
                   SAMPLE_RATE, VAD_FILE, InferError)
from .checks import CLIP_MAX_SECONDS, MAX_RATE, MIN_RATE, SILENCE_DBFS, Level, header_problem, is_silent
from .features import graph_inputs, input_names
from .model import EmotionModel, cuda_available, default_threads, session, using_threads
from .preprocess import model_input, preprocess, trim_interval
from .reader import AudioInfo, open_audio, read_blocks
from .resample import PolyphaseResampler, Resampler
from .vad import SileroVad, SpeechSegmenter, VadStream, find_vad_model, installed_vad_model, speech_timestamps
from .windows import Windower, plan_windows

__all__ = ["AudioInfo", "CLIP_MAX_SECONDS", "ENTRY_FILE", "EmotionModel", "InferError", "LABELS_FILE",
           "Level", "MAX_RATE", "MIN_RATE", "MODEL_FILE", "OUTPUT_NAME", "Options", "PACKAGE_DIR", "PREPROCESS_FILE",
           "PolyphaseResampler", "Resampler", "SAMPLE_RATE", "SILENCE_DBFS", "SileroVad", "SpeechSegmenter", "Stats",
           "VAD_FILE", "VadStream", "Windower", "analyse", "analyse_files", "cuda_available", "default_threads",
           "find_vad_model", "format_text", "graph_inputs", "header_problem", "input_names", "installed_vad_model", "is_silent", "model_input",
           "open_audio", "plan_windows", "preprocess", "read_blocks", "session", "speech_timestamps",
           "trim_interval", "using_threads"]
