"""Backbones built from registry entries, with the provenance of their weights.

Weights come from exactly one of three places, chosen by the user and recorded with every result:

* ``hub`` (default): ``from_pretrained(hub_id, revision)``. The local Hugging Face cache is tried
  first and ``HF_HUB_OFFLINE`` is honoured; if nothing is cached and the hub cannot be reached we
  fail at once (rather than after a minute of retries) naming the other options.
* a path: a ``save_pretrained`` folder, or a checkpoint file (``.safetensors``/``.bin``/``.pt``)
  loaded into the architecture the entry describes. Recorded with a SHA-256 of the files.
* ``random[:SEED]``: the entry's architecture with seeded random initialisation. Only when asked:
  there is no silent fallback to it, and its provenance says ``random`` so every output shows it.

The built network's parameter count is checked against the entry, which catches a config that
does not describe the architecture it claims to.

Each model kind is declared once, at the bottom (:data:`KINDS`): the fields its entries hold (the
registry validates against them), how a ``--weights`` spec is read and recorded, how the model is
built and embeds, and whether it is weight-free. A kind with weights also owns its input: what its
graph is fed from the 16 kHz waveform (:func:`frontend`, a spec :mod:`serbench.runtime.features`
computes, so a model folder feeds it alike), the torch module artefacts are exported from
(:func:`network`), and what fine-tuning freezes. ``transformers`` (the wav2vec2 family, waveform in)
and ``whisper`` (log-mel in) are networks which compression recipes turn into artefacts
(:mod:`serbench.artefacts`); ``opensmile`` (eGeMAPS) is weight-free: nothing to compress, so it runs
as built, under the reference recipe alone. Callers use the functions here (:func:`provenance`,
:func:`build`, :func:`encoder`, :func:`network`, :func:`frontend`), never the kind's name.
"""
from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from serbench.entries import ModelEntry, RecipeEntry
from serbench.errors import SerbenchError
from serbench import schema
from serbench.schema import Field, positive

OTHER_WEIGHTS = ("--weights PATH (a save_pretrained folder or a checkpoint file), or "
                 "--weights random[:SEED] (explicit random initialisation, labelled as such)")
WEIGHT_OPTIONS = "--weights hub (pretrained, from the hub or the local Hugging Face cache), " + OTHER_WEIGHTS
PARAMS_TOLERANCE = 0.001  # relative; e.g. masked_spec_embed exists only when masking is configured
MIN_SECONDS = 0.5


def parse_weights(spec: str | None) -> dict:
    """``hub`` | ``random[:SEED]`` | a path, as a small dict (no hashing, no loading)."""
    spec = "hub" if spec in (None, "") else str(spec)
    if spec == "hub":
        return {"kind": "hub"}
    if spec == "random" or spec.startswith("random:"):
        seed = spec.partition(":")[2] or "0"
        if not seed.lstrip("-").isdigit():
            raise SerbenchError(f"--weights {spec!r}: the seed after 'random:' must be an integer")
        problem = schema.seed(int(seed))  # the range every other seed has
        if problem:
            raise SerbenchError(f"--weights {spec!r}: the seed after 'random:' {problem}")
        return {"kind": "random", "seed": int(seed)}
    path = Path(spec).expanduser()
    if not path.exists():
        raise SerbenchError(f"--weights {spec!r}: no such file or folder; use {WEIGHT_OPTIONS}")
    return {"kind": "local", "path": str(path.resolve())}


def _sha256(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and contents, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode() + b"\0")
        with f.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _transformers_provenance(entry: ModelEntry, weights: str | None = "hub") -> dict:
    spec = parse_weights(weights)
    if spec["kind"] == "hub":
        if not entry.hub_id:
            raise SerbenchError(f"model {entry.name!r} ({entry.path}) has no hub_id, so it has no "
                                f"pretrained weights; use {WEIGHT_OPTIONS}")
        return {"kind": "hub", "id": entry.hub_id, "revision": entry.revision}
    if spec["kind"] == "local":
        return {**spec, "sha256": _sha256(Path(spec["path"]))}
    return {**spec, "label": "RANDOM-INIT weights (not pretrained)"}


def is_random(prov: dict) -> bool:
    return prov.get("kind") == "random"


def describe(prov: dict) -> str:
    """One line for humans; random weights say so loudly."""
    kind = prov.get("kind")
    if kind == "hub":
        return f"hub {prov['id']}@{prov['revision']}"
    if kind == "local":
        return f"local {prov['path']} (sha256 {prov['sha256'][:12]})"
    if kind == "random":
        return f"RANDOM-INIT (seed {prov['seed']}), not pretrained"
    if kind == "finetuned" and isinstance(prov.get("base"), dict):
        return f"fine-tuned from {describe(prov['base'])}"
    return f"weight-free ({prov.get('extractor', kind)})"


def quiet_imports() -> None:
    """Silence import-time noise: torchao (pulled in by transformers once neural-compressor's
    torch extra is installed) warns about optional CUDA kernels, and torch about a deprecated
    Enum registration in torchao. Neither concerns CPU inference."""
    import logging

    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _classes(entry: ModelEntry):
    quiet_imports()
    import transformers

    cls = getattr(transformers, entry.model_class, None)
    if cls is None or not hasattr(cls, "config_class"):
        raise SerbenchError(f"{entry.path}: field 'model_class' names {entry.model_class!r}, which is not a "
                            f"model class of transformers {transformers.__version__}")
    try:
        cls.config_class(**entry.config)
    except (TypeError, ValueError) as exc:
        raise SerbenchError(f"{entry.path}: field 'config' is not a valid {cls.config_class.__name__}: {exc}") from exc
    return cls, cls.config_class


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached, or None. One TCP connect instead of minutes of retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        return "HF_HUB_OFFLINE is set"  # the env var is re-read: the constant was fixed at import
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return f"{url.hostname}:{port} is unreachable ({exc})"
    return None


def _from_hub(entry: ModelEntry, cls):
    try:  # the cache first: no network needed when the pinned revision is already there
        return cls.from_pretrained(entry.hub_id, revision=entry.revision, local_files_only=True)
    except OSError:
        pass
    reason = _hub_unreachable()
    if reason:
        raise SerbenchError(f"cannot load {entry.hub_id}@{entry.revision} for model {entry.name!r}: "
                            f"it is not in the Hugging Face cache and {reason}. Use {OTHER_WEIGHTS}")
    try:
        return cls.from_pretrained(entry.hub_id, revision=entry.revision)
    except OSError as exc:
        raise SerbenchError(f"cannot load {entry.hub_id}@{entry.revision} for model {entry.name!r}: "
                            f"{exc}. Use {OTHER_WEIGHTS}") from exc


def _from_checkpoint(entry: ModelEntry, cls, config_cls, path: Path):
    import torch

    model = cls(config_cls(**entry.config))
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a bad file for the user
        raise SerbenchError(f"--weights {path}: cannot read checkpoint: {exc}") from exc
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    prefix = f"{model.base_model_prefix}."  # checkpoints of a *ForX head model nest the backbone
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SerbenchError(f"--weights {path}: checkpoint does not fit {entry.model_class} built from "
                            f"{entry.path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def check_params(entry: ModelEntry, model) -> int:
    """The parameter count, after checking it against the entry's ``params``."""
    n = sum(p.numel() for p in model.parameters())
    if abs(n - entry.params) > PARAMS_TOLERANCE * entry.params:
        raise SerbenchError(f"{entry.path}: field 'params' expects {entry.params:,} parameters but the "
                            f"built {entry.model_class} has {n:,}: the architecture config (the entry's "
                            "'config', or the config saved with the weights) does not match the entry")
    return n


def _build_transformers(entry: ModelEntry, prov: dict, part: Callable | None = None):
    """The network in eval mode, its weights from where ``prov`` says (``part``: the piece of it
    that is the backbone, e.g. a Whisper model's encoder; its parameters are what ``params`` counts)."""
    import torch

    cls, config_cls = _classes(entry)
    if prov["kind"] == "random":
        torch.manual_seed(prov["seed"])
        model = cls(config_cls(**entry.config))
    elif prov["kind"] == "hub":
        model = _from_hub(entry, cls)
    elif Path(prov["path"]).is_dir():
        try:
            model = cls.from_pretrained(prov["path"], local_files_only=True)
        except (OSError, ValueError) as exc:
            raise SerbenchError(f"--weights {prov['path']}: not a loadable save_pretrained folder for "
                                f"{entry.model_class}: {exc}") from exc
    else:
        model = _from_checkpoint(entry, cls, config_cls, Path(prov["path"]))
    model = part(model) if part else model
    model.eval()
    check_params(entry, model)
    return model


# ---- encoders: one waveform in, mean-pooled per-layer embeddings out ----------------------------


def check_wave(wave: np.ndarray, sample_rate: int = 16_000) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise SerbenchError(f"embed() takes one mono waveform (1-D), got shape {wave.shape}")
    if wave.size < MIN_SECONDS * sample_rate:
        raise SerbenchError(f"embed() needs at least {MIN_SECONDS} s of audio, got "
                            f"{wave.size / sample_rate:.3f} s")
    return wave


def stacked(model, normalize: bool):
    """The wav2vec2-family network as exported: waveforms (batch, samples) -> all hidden states
    stacked, (batch, layers, frames, dim). Normalisation, when the checkpoint expects it, is inside
    the graph so that every artefact is self-contained."""
    import torch

    class Stacked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_values):
            if normalize:  # what Wav2Vec2FeatureExtractor(do_normalize=True) does, per clip
                mean = input_values.mean(dim=-1, keepdim=True)
                var = ((input_values - mean) ** 2).mean(dim=-1, keepdim=True)
                input_values = (input_values - mean) / torch.sqrt(var + 1e-7)
            out = self.model(input_values, output_hidden_states=True, return_dict=True)
            return torch.stack(out.hidden_states, dim=1)

    return Stacked().eval()


def whisper_stacked(encoder):
    """A Whisper encoder as exported: log-mel ``input_features`` (batch, mels, frames) -> all hidden
    states stacked, (batch, layers, frames, dim), as ``WhisperEncoder(output_hidden_states=True)``
    computes them (each layer's input, then the final layer norm's output), but with the positions
    cut to the frames fed: transformers' forward refuses anything but 30 s. Given ``audio_frames``
    (30 s padded input, :mod:`serbench.runtime.features`), only the frames holding audio are kept."""
    import torch

    class WhisperStacked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = encoder

        def forward(self, input_features, audio_frames=None):
            enc = self.model
            x = torch.nn.functional.gelu(enc.conv1(input_features))
            x = torch.nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
            x = x + enc.embed_positions.weight[: x.shape[1]]
            x = torch.nn.functional.dropout(x, p=enc.dropout, training=enc.training)
            states = []
            for layer in enc.layers:
                states.append(x)
                x = layer(x, attention_mask=None, layer_head_mask=None)
                x = x[0] if isinstance(x, tuple) else x
            states.append(enc.layer_norm(x))
            out = torch.stack(states, dim=1)
            if audio_frames is not None:
                out = out.index_select(2, torch.arange(audio_frames, device=out.device))
            return out

    return WhisperStacked().eval()


def network(entry: ModelEntry, model):
    """The torch module every artefact is made from: the graph inputs :func:`frontend` declares ->
    (batch, layers, frames, dim)."""
    return kind(entry).network(entry, model)


def frontend(entry: ModelEntry) -> dict:
    """What the entry's graph is fed, as a plain spec (:mod:`serbench.runtime.features`)."""
    return kind(entry).frontend(entry)


def torch_inputs(spec: dict, waves) -> tuple:
    """The graph inputs of equal-length waveforms, as torch tensors in the network's argument order
    (the waves are not checked here: the encoders' ``embed`` does that, :func:`check_wave`)."""
    import torch

    from serbench.runtime import features

    feeds = features.batch_inputs(waves, spec)
    return tuple(torch.from_numpy(feeds[n]) for n in features.input_names(spec))


def export_spec(entry: ModelEntry) -> tuple[list[str], tuple, dict]:
    """``(input names, dummy inputs, dynamic axes)`` for ``torch.onnx.export`` of :func:`network`:
    one second of low noise through the entry's frontend; batch and time axes dynamic (the frames of
    a padded Whisper input are fixed at 30 s, those of its output follow ``audio_frames``)."""
    from serbench.runtime import features

    spec = frontend(entry)
    wave = np.random.default_rng(0).standard_normal(entry.sample_rate).astype(np.float32) * 0.01
    return features.input_names(spec), torch_inputs(spec, [wave]), features.input_axes(spec)


class TorchEncoder:
    """The fp32 torch network itself (what the ONNX export is checked against)."""

    def __init__(self, entry: ModelEntry, model, threads: int | None = None):
        import torch

        self.net = network(entry, model)
        self.spec = frontend(entry)
        self.sample_rate = entry.sample_rate
        self.threads = threads or torch.get_num_threads()

    def embed(self, wave: np.ndarray) -> np.ndarray:
        import torch

        wave = check_wave(wave, self.sample_rate)
        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            hidden = self.net(*torch_inputs(self.spec, [wave]))[0]
        return hidden.mean(dim=1).numpy().astype(np.float32)


class OpenSmileEncoder:
    """openSMILE functionals (eGeMAPS): shape (1, dim), a weight-free baseline."""

    def __init__(self, entry: ModelEntry):
        import opensmile

        try:
            self.smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, entry.feature_set),
                                         feature_level=getattr(opensmile.FeatureLevel, entry.feature_level))
        except AttributeError as exc:
            raise SerbenchError(f"{entry.path}: opensmile has no feature set/level "
                                f"{entry.feature_set}/{entry.feature_level}") from exc
        self.sample_rate, self.dim, self.threads = entry.sample_rate, entry.dim, 1

    def embed(self, wave: np.ndarray) -> np.ndarray:
        wave = check_wave(wave, self.sample_rate)
        feats = self.smile.process_signal(wave, self.sample_rate).to_numpy(dtype=np.float32)
        if feats.shape != (1, self.dim):
            raise SerbenchError(f"opensmile returned {feats.shape[1]} features, the entry says {self.dim}")
        return feats


def _opensmile_weights(entry: ModelEntry, weights: str | None) -> dict:
    if weights not in (None, "", "hub"):
        raise SerbenchError(f"model {entry.name!r} is weight-free ({source(entry)}): --weights {weights} "
                            "does not apply")
    return {"kind": "none"}


def _opensmile_provenance(entry: ModelEntry, weights: str | None = "hub") -> dict:
    import opensmile

    _opensmile_weights(entry, weights)
    return {"kind": "none", "extractor": "opensmile", "opensmile": opensmile.__version__,
            "feature_set": entry.feature_set, "feature_level": entry.feature_level}


# ---- model kinds, declared once -----------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A kind of model entry: the fields its YAML holds (beside every entry's), and how it works.

    A weight-free kind has nothing for a recipe to compress: it runs as built, under the reference
    recipe alone, with no artefact (``serbench run`` embeds with its :attr:`encoder` directly).
    """

    name: str
    fields: tuple[Field, ...]
    weight_free: bool
    parse_weights: Callable[[ModelEntry, str | None], dict]  # the spec checked: nothing loaded or hashed
    provenance: Callable[[ModelEntry, str | None], dict]     # where its weights come from, recorded
    build: Callable[[ModelEntry, dict], object]              # the model, from the entry and its provenance
    encoder: Callable[[ModelEntry, object, int | None], object]  # embed(wave) -> (layers, dim), built model
    source: Callable[[ModelEntry], str]                      # where its weights come from, for `serbench models`
    # a kind with weights: what its graph is fed, the torch module artefacts are made from, and the
    # modules fine-tuning keeps frozen (the convolutional front end)
    frontend: Callable[[ModelEntry], dict] | None = None
    network: Callable[[ModelEntry, object], object] | None = None
    feature_encoder: Callable[[object], list] | None = None


def _identifier(v: str) -> str | None:
    return None if v.isidentifier() else f"must be a transformers class name, got {v!r}"


def _wav2vec2_feature_encoder(model) -> list:
    encoder = getattr(model, "feature_extractor", None)
    if encoder is None:
        raise SerbenchError(f"{type(model).__name__} has no conv feature_extractor to freeze")
    return [encoder]


def _whisper_encoder(entry: ModelEntry) -> Callable:
    """The part of a built Whisper model that is the backbone: its encoder, refused by name when the
    entry's ``model_class`` builds something else (a HuBERT has an ``encoder`` too, of another kind)."""
    def part(model):
        encoder = getattr(model, "encoder", None)
        if not all(hasattr(encoder, a) for a in ("conv1", "conv2", "embed_positions", "layers")):
            raise SerbenchError(f"{entry.path}: field 'model_class' is {entry.model_class!r}, which has no Whisper "
                                "encoder (conv1, conv2, embed_positions, layers); a kind: whisper entry needs "
                                "WhisperModel or another Whisper class")
        return encoder
    return part


def _waveform_spec(entry: ModelEntry) -> dict:
    from serbench.runtime import features

    return dict(features.WAVEFORM)


def _whisper_spec(entry: ModelEntry) -> dict:
    from serbench.runtime import features

    cfg = entry.config
    return features.whisper_spec(cfg.get("num_mel_bins", 80), entry.positions,
                                 max_source_positions=cfg.get("max_source_positions", 1500))


_HUB_SOURCE = lambda e: f"{e.hub_id}@{e.revision}" if e.hub_id else "(no hub weights: local or random only)"  # noqa: E731
_NETWORK_FIELDS = (
    # Whether transformers has this class is checked when the model is built: importing
    # transformers (and torch) here would make listing the registry take seconds.
    Field("hub_id", str),
    Field("revision", (str, int), default="main"),
    Field("model_class", str, required=True, check=_identifier),
    Field("config", dict, required=True),
    Field("params", int, required=True,
          check=lambda v: None if v > 0 else f"must be a positive parameter count, got {v}"),
)

KINDS = {k.name: k for k in (
    # wav2vec2, HuBERT, WavLM, DistilHuBERT: a conv stack over the raw waveform, then a transformer
    Kind("transformers", fields=_NETWORK_FIELDS + (Field("normalize", bool, default=False),),
         weight_free=False, parse_weights=lambda entry, weights: parse_weights(weights),
         provenance=_transformers_provenance, build=_build_transformers, encoder=TorchEncoder, source=_HUB_SOURCE,
         frontend=_waveform_spec,
         network=lambda entry, model: stacked(model, entry.normalize),
         feature_encoder=_wav2vec2_feature_encoder),
    # Whisper's encoder (model_class WhisperModel; the decoder is dropped once built, and ``params``
    # counts the encoder): its own log-mel in, 30 s of positions, which ``positions`` cuts to the
    # clip (``cut``) or fills with padding (``pad``), :mod:`serbench.runtime.features`
    Kind("whisper", fields=_NETWORK_FIELDS + (Field("positions", str, default="cut", choices=("cut", "pad")),),
         weight_free=False, parse_weights=lambda entry, weights: parse_weights(weights),
         provenance=_transformers_provenance, build=lambda e, p: _build_transformers(e, p, _whisper_encoder(e)),
         encoder=TorchEncoder, source=_HUB_SOURCE, frontend=_whisper_spec,
         network=lambda entry, model: whisper_stacked(model),
         feature_encoder=lambda model: [model.conv1, model.conv2]),
    Kind("opensmile", fields=(
        Field("feature_set", str, required=True),
        Field("feature_level", str, default="Functionals"),
        Field("dim", int, required=True, check=positive),
    ), weight_free=True, parse_weights=_opensmile_weights, provenance=_opensmile_provenance,
        build=lambda entry, prov: OpenSmileEncoder(entry), encoder=lambda entry, model, threads=None: model,
        source=lambda e: f"opensmile {e.feature_set} {e.feature_level}"),
)}


def kind(entry: ModelEntry) -> Kind:
    return KINDS[entry.kind]


def source(entry: ModelEntry) -> str:
    """Where the entry's weights come from, in a few words (``serbench models``)."""
    return kind(entry).source(entry)


def check_weights(entry: ModelEntry, weights: str | None = "hub") -> dict:
    """The ``--weights`` spec, checked for this entry without loading or hashing anything."""
    return kind(entry).parse_weights(entry, weights)


def provenance(entry: ModelEntry, weights: str | None = "hub") -> dict:
    """The plain-data record of where the weights come from, without building the model.

    Cheap enough to compute before looking up a cached artefact (a local folder is hashed).
    """
    return kind(entry).provenance(entry, weights)


def build(entry: ModelEntry, weights: str | None = "hub"):
    """``(model, provenance)``: the backbone in eval mode (a weight-free kind's is already its
    encoder, e.g. :class:`OpenSmileEncoder`) and where its weights came from."""
    prov = provenance(entry, weights)
    return kind(entry).build(entry, prov), prov


def encoder(entry: ModelEntry, model, threads: int | None = None):
    """An encoder over an already-built model: the fp32 torch network (:class:`TorchEncoder`), or a
    weight-free kind's model as built."""
    return kind(entry).encoder(entry, model, threads)


def check_recipe(entry: ModelEntry, recipe: RecipeEntry) -> None:
    """Refuse a compression recipe on a weight-free model (only the reference recipe applies)."""
    if entry.weight_free and not recipe.is_reference:
        raise SerbenchError(f"model {entry.name!r} is weight-free ({source(entry)}): there is nothing for "
                            f"recipe {recipe.name!r} to compress; only the reference recipe (onnxruntime/fp32) "
                            "applies")
