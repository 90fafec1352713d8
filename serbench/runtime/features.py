"""What the exported graph is fed: a backbone's input frontend, from the 16 kHz waveform, in numpy.

Every artefact and every model folder takes the 16 kHz waveform; what the *graph* reads depends on
the encoder family, and is declared as a plain-data spec (``{"name": ..., ...}``) that is recorded
with each artefact (its provenance) and each model folder (``preprocess.json``), so the same code
feeds the graph in serbench and in a standalone folder:

* ``waveform`` (the wav2vec2 family): the samples themselves, ``input_values`` (batch, samples);
  the per-clip normalisation an entry may ask for is inside the graph.
* ``whisper-log-mel`` (Whisper encoders): Whisper's own log-mel spectrogram, ``input_features``
  (batch, n_mels, frames): a 400-point periodic-Hann STFT every 160 samples (centred, reflect
  padded), power, slaney mel filters 0-8 kHz, log10 floored at 1e-10, the last frame dropped,
  clamped to 8 below its maximum, ``(x + 4) / 4``. This is ``WhisperFeatureExtractor``'s
  arithmetic, ported to numpy because a model folder runs without transformers or torch; a test
  holds it to the extractor itself. ``positions`` says how a clip meets the encoder's 30 s of
  positions: ``cut`` feeds the clip's own frames (the positions cut to the clip: compute grows
  with the clip), ``pad`` zero-pads the waveform to 30 s as Whisper was trained, and feeds
  ``audio_frames``, the number of encoder frames that hold audio, which the graph keeps (so
  pooling never averages the padding).

The log-mel is a numpy step here rather than ONNX ops in the graph. ``benchmarks/logmel.py``
measured both against the extractor on 40 real RAVDESS clips (AMD EPYC, one thread): numpy within
3.6e-5 of it at 1.2 ms a clip; the same arithmetic as ONNX ops (``STFT``, opset 17) within 4.6e-3
at 19.8 ms, about as long as the whole cut tiny.en encoder takes, and after the fp16 recipe's
converter 0.69 off (a power spectrum does not fit float16). So the graph holds the encoder alone
and every recipe compresses only that.
"""
from __future__ import annotations

import numpy as np

from .base import SAMPLE_RATE, InferError

WAVEFORM = {"name": "waveform"}


def whisper_spec(n_mels: int = 80, positions: str = "cut", n_fft: int = 400, hop_length: int = 160,
                 max_source_positions: int = 1500) -> dict:
    """The ``whisper-log-mel`` spec of an encoder with ``n_mels`` bins and ``max_source_positions``
    encoder frames (two mel frames each: its second conv has stride 2)."""
    if positions not in ("cut", "pad"):
        raise ValueError(f"positions must be 'cut' or 'pad', got {positions!r}")
    return {"name": "whisper-log-mel", "n_mels": int(n_mels), "n_fft": int(n_fft), "hop_length": int(hop_length),
            "positions": positions, "max_samples": int(max_source_positions) * 2 * int(hop_length)}


def _hz_to_mel(f):
    """The slaney mel scale (linear below 1 kHz, logarithmic above), as librosa and transformers."""
    f = np.asarray(f, dtype=np.float64)
    log = f >= 1000.0
    mel = 3.0 * f / 200.0
    return np.where(log, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) * (27.0 / np.log(6.4)), mel)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    log = m >= 15.0
    return np.where(log, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), 200.0 * m / 3.0)


def mel_filters(n_mels: int, n_fft: int = 400, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) slaney-normalised triangular filters over 0 .. sample_rate / 2."""
    fft_freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    diff = np.diff(edges)
    slopes = edges[None, :] - fft_freqs[:, None]
    down, up = -slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2:n_mels + 2] - edges[:n_mels]))[None, :]


_FILTERS: dict[tuple[int, int], np.ndarray] = {}


def log_mel(wave: np.ndarray, n_mels: int = 80, n_fft: int = 400, hop_length: int = 160) -> np.ndarray:
    """(n_mels, samples // hop_length) float32: Whisper's log-mel of one waveform (module docstring)."""
    key = (n_mels, n_fft)
    if key not in _FILTERS:
        _FILTERS[key] = mel_filters(n_mels, n_fft)
    x = np.pad(np.asarray(wave, dtype=np.float64), n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop_length]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)   # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    spec = np.log10(np.maximum(1e-10, power @ _FILTERS[key])).T[:, :-1]
    spec = np.maximum(spec, spec.max() - 8.0)
    return ((spec + 4.0) / 4.0).astype(np.float32)


def encoder_frames(samples: int, hop_length: int = 160) -> int:
    """Encoder frames that cover ``samples`` of audio: one mel frame per hop, then stride 2."""
    return max(1, -(-(samples // hop_length) // 2))


def input_names(spec: dict | None) -> list[str]:
    """The graph's input names, in the order :func:`graph_inputs` gives them."""
    spec = spec or WAVEFORM
    if spec["name"] == "waveform":
        return ["input_values"]
    if spec["name"] == "whisper-log-mel":
        return ["input_features"] + (["audio_frames"] if spec["positions"] == "pad" else [])
    raise InferError(f"unknown input frontend {spec['name']!r}: this runtime knows waveform and whisper-log-mel")


def input_axes(spec: dict | None) -> dict[str, dict[int, str]]:
    """Each graph input's dynamic axes (for ``torch.onnx.export``): batch, and time where the input
    has a clip's length (a padded Whisper input is always 30 s; its output follows ``audio_frames``)."""
    spec = spec or WAVEFORM
    time = {"input_values": {1: "samples"},
            "input_features": {} if spec.get("positions") == "pad" else {2: "mel_frames"}}
    return {n: {0: "batch", **time[n]} for n in input_names(spec) if n in time}


def describe(spec: dict | None) -> str:
    """The graph's input in a few words, for a model card."""
    spec = spec or WAVEFORM
    if spec["name"] == "waveform":
        return "input_values: float32 (batch, samples), 16 kHz mono, preprocessed"
    extra = (", audio_frames: int64 (the encoder frames holding audio)" if spec["positions"] == "pad" else "")
    return (f"input_features: float32 (batch, {spec['n_mels']}, frames), Whisper log-mel of the preprocessed "
            f"16 kHz window, positions {spec['positions']}{extra}; computed by serbench_runtime.features")


def graph_inputs(wave: np.ndarray, spec: dict | None) -> dict[str, np.ndarray]:
    """The graph's feed for one 16 kHz waveform (batch of one), as ``spec`` declares."""
    spec = spec or WAVEFORM
    names = input_names(spec)
    wave = np.asarray(wave, dtype=np.float32)
    if spec["name"] == "waveform":
        return {names[0]: wave[None]}
    top = int(spec["max_samples"])
    if wave.size > top:
        raise InferError(f"a Whisper encoder covers {top / SAMPLE_RATE:g} s of audio; got {wave.size / SAMPLE_RATE:.2f} s "
                         "(cut the input to its window length)")
    hop = int(spec["hop_length"])
    if spec["positions"] == "cut":
        return {names[0]: log_mel(wave, spec["n_mels"], spec["n_fft"], hop)[None]}
    mel = log_mel(np.pad(wave, (0, top - wave.size)), spec["n_mels"], spec["n_fft"], hop)
    return {names[0]: mel[None], names[1]: np.array(encoder_frames(wave.size, hop), dtype=np.int64)}


def batch_inputs(waves, spec: dict | None) -> dict[str, np.ndarray]:
    """:func:`graph_inputs` of equal-length waveforms, stacked along the batch axis."""
    feeds = [graph_inputs(w, spec) for w in waves]
    return {k: np.concatenate([f[k] for f in feeds]) if feeds[0][k].ndim else feeds[0][k] for k in feeds[0]}
