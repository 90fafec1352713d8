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


WHISPER_CONFIG = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
                      decoder_attention_heads=2, decoder_ffn_dim=64, vocab_size=64, num_mel_bins=80,
                      max_source_positions=1500, max_target_positions=16, pad_token_id=0, bos_token_id=1,
                      eos_token_id=2, decoder_start_token_id=1)


def whisper_entry_data(**overrides) -> dict:
    """A tiny Whisper entry (kind whisper) whose ``params`` is counted from the encoder it builds."""
    import torch
    from transformers import WhisperConfig, WhisperModel

    config = {**WHISPER_CONFIG, **overrides.pop("config", {})}
    with torch.device("meta"):
        n = sum(p.numel() for p in WhisperModel(WhisperConfig(**config)).encoder.parameters())
    data = {"name": "whisper-test", "description": "tiny Whisper encoder for tests", "kind": "whisper",
            "model_class": "WhisperModel", "licence": "MIT", "params": n, "sample_rate": 16000,
            "input": {"trim_db": None, "preemphasis": None, "peak": None, "seconds": 8.0},
            "positions": "cut", "config": config}
    data.update(overrides)
    return data


def save_tiny_whisper(folder: Path, seed: int = 0) -> Path:
    """The tiny Whisper architecture as a user's checkpoint: WhisperForConditionalGeneration, seeded,
    written with save_pretrained (what benchmarks/weights.py makes of the real tiny.en)."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    WhisperForConditionalGeneration(WhisperConfig(**WHISPER_CONFIG)).save_pretrained(folder)
    return Path(folder)
