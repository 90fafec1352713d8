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


def recipe_for(name: str, path: str | Path) -> str:
    """The recipe that reads the corpus a protocol calls ``name`` at ``path``: ``manifest`` for a
    ``.csv`` file (any file name, any corpus name), else the recipe called ``name``."""
    path = Path(path)
    return manifest_csv.NAME if path.suffix.lower() == ".csv" and not path.is_dir() else name


def prepare_source(name: str, path: str | Path, label_map: str | None = None,
                   progress: bool = True) -> Manifest:
    """The corpus a protocol calls ``name``, read from ``path`` (what ``serbench run`` does).

    A ``.csv`` file is a manifest CSV whatever it is called, and its corpus takes the protocol's
    name: ``--data manifest=~/my_data.csv`` (or ``--corpus mine --data mine=a.csv``) gives a
    corpus the protocol finds, labelled by the protocol's label map for it (the manifest's
    ``identity`` map for a name without a recipe). Any other path goes to the recipe ``name``.
    """
    if recipe_for(name, path) == manifest_csv.NAME:
        return manifest_csv.prepare(Path(path), label_map=label_map, progress=progress, corpus=name)
    return prepare(name, path, label_map=label_map, progress=progress)
