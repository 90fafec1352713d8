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
"""
from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from serbench.errors import SerbenchError
from serbench.registry import ModelEntry

WEIGHT_OPTIONS = ("--weights hub (pretrained, from the hub or the local Hugging Face cache), "
                  "--weights PATH (a save_pretrained folder or a checkpoint file), or "
                  "--weights random[:SEED] (explicit random initialisation, labelled as such)")
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


def provenance(entry: ModelEntry, weights: str | None = "hub") -> dict:
    """The plain-data record of where the weights come from, without building the model.

    Cheap enough to compute before looking up a cached artefact (a local folder is hashed).
    """
    if entry.weight_free:
        import opensmile

        if weights not in (None, "", "hub"):
            raise SerbenchError(f"model {entry.name!r} is weight-free (openSMILE features): "
                                f"--weights {weights} does not apply")
        return {"kind": "none", "extractor": "opensmile", "opensmile": opensmile.__version__,
                "feature_set": entry.feature_set, "feature_level": entry.feature_level}
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
                            f"it is not in the Hugging Face cache and {reason}. Use {WEIGHT_OPTIONS}")
    try:
        return cls.from_pretrained(entry.hub_id, revision=entry.revision)
    except OSError as exc:
        raise SerbenchError(f"cannot load {entry.hub_id}@{entry.revision} for model {entry.name!r}: "
                            f"{exc}. Use {WEIGHT_OPTIONS}") from exc


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


def build(entry: ModelEntry, weights: str | None = "hub"):
    """``(model, provenance)``: the backbone in eval mode and where its weights came from.

    For a weight-free entry (eGeMAPS) the "model" is an :class:`OpenSmileEncoder`.
    """
    prov = provenance(entry, weights)
    if entry.weight_free:
        return OpenSmileEncoder(entry), prov
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
    model.eval()
    check_params(entry, model)
    return model, prov


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
    """The network as exported: waveforms (batch, samples) -> all hidden states stacked,
    (batch, layers, frames, dim). Normalisation, when the checkpoint expects it, is inside the
    graph so that every artefact is self-contained."""
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


class TorchEncoder:
    """The fp32 torch model itself: the reference every artefact's fidelity is measured against."""

    def __init__(self, entry: ModelEntry, model, threads: int | None = None):
        import torch

        self.net = stacked(model, entry.normalize)
        self.sample_rate = entry.sample_rate
        self.threads = threads or torch.get_num_threads()

    def embed(self, wave: np.ndarray) -> np.ndarray:
        import torch

        wave = check_wave(wave, self.sample_rate)
        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            hidden = self.net(torch.from_numpy(wave)[None])[0]
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


def encoder(entry: ModelEntry, model, threads: int | None = None):
    """An encoder over an already-built model (torch fp32, or openSMILE for weight-free entries)."""
    return model if entry.weight_free else TorchEncoder(entry, model, threads)
