"""What a registry entry is once loaded: a backbone (:class:`ModelEntry`) or a compression recipe
(:class:`RecipeEntry`), plain frozen data.

They live apart from :mod:`serbench.registry`, which reads and validates the YAML, because the
registry validates entries against declarations made by the code that acts on them (model kinds
in :mod:`serbench.backbones`, recipe methods in :mod:`serbench.artefacts`), and that code takes
entries as arguments: the types sit below both, the loading above both, and no import goes round.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ModelEntry:
    """A backbone: where its weights live, how to build it offline, what it should weigh."""

    name: str
    kind: str
    path: Path
    content: dict = field(repr=False)
    description: str = ""
    licence: str = ""
    hub_id: str | None = None
    revision: str | None = None
    model_class: str | None = None
    config: dict = field(default_factory=dict)
    params: int | None = None
    normalize: bool = False
    positions: str | None = None  # a Whisper encoder's: its 30 s of positions cut to the clip, or padding
    sample_rate: int = 16_000
    feature_set: str | None = None
    feature_level: str | None = None
    dim: int | None = None
    # every serbench.audio.Preprocess field but sample_rate, resolved by the registry (None = step
    # off), so that audio.Preprocess(sample_rate=entry.sample_rate, **entry.input) builds the input
    input: dict = field(default_factory=dict)
    head: str | None = None  # the default classifier head's name
    weight_free: bool = False  # what its kind declares (serbench.backbones.Kind): no weights to compress


@dataclass(frozen=True)
class RecipeEntry:
    """A compression recipe: which backend, which method, with which options."""

    name: str
    backend: str
    method: str
    path: Path
    content: dict = field(repr=False)
    description: str = ""
    calibration: bool = False
    options: dict = field(default_factory=dict)
    # the uncompressed export (what probe heads are trained on and every compressed recipe is
    # compared with): what its method declares (serbench.artefacts.methods), never its file name
    is_reference: bool = False
