"""Helpers for the registry/backbone/compression tests: a tiny HuBERT on disk, entries in a
user registry folder, short synthetic clips. Nothing here touches the network."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from serbench import registry


def save_tiny(folder: Path, seed: int = 0, **config_overrides) -> Path:
    """The `tiny` entry's architecture, seeded random weights, written with save_pretrained."""
    import torch
    from transformers import HubertConfig, HubertModel

    entry = registry.load_model("tiny")
    torch.manual_seed(seed)
    model = HubertModel(HubertConfig(**{**entry.config, **config_overrides}))
    model.save_pretrained(folder)
    return Path(folder)


def write_entry(root: Path, kind: str, name: str, data: dict | str) -> Path:
    """Write ``root/<kind>/<name>.yaml`` (a folder usable as ``$SERBENCH_REGISTRY``)."""
    path = Path(root) / kind / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def tiny_entry_data(**overrides) -> dict:
    """The built-in tiny entry's content, as a dict to edit."""
    data = dict(registry.load_model("tiny").content)
    data.update(overrides)
    return data


def clips(n: int, seconds: float = 1.0, seed: int = 0) -> list[np.ndarray]:
    from serbench.synth.voice import probe_clips

    return [np.asarray(c, dtype=np.float32) for c in probe_clips(n, seed=seed, seconds=seconds)]
