"""Corpus recipes: one module per corpus, each turning its distributed layout into a Manifest.

Modelled on lhotse's recipes. Every recipe module has ``NAME``, ``DEFAULT_LABEL_MAP`` and
``prepare(path, label_map=None, progress=True) -> Manifest``.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from serbench.corpora import crema_d, emodb, iemocap, manifest_csv, ravdess
from serbench.errors import SerbenchError
from serbench.manifest import Manifest

RECIPES: dict[str, ModuleType] = {m.NAME: m for m in (iemocap, crema_d, ravdess, emodb, manifest_csv)}


def prepare(name: str, path: str | Path, label_map: str | None = None, progress: bool = True) -> Manifest:
    """Run the recipe called ``name`` on ``path``."""
    if name not in RECIPES:
        raise SerbenchError(f"unknown corpus {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name].prepare(Path(path), label_map=label_map, progress=progress)
