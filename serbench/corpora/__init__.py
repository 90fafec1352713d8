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


def raw_label_text(corpus: str, raw: str) -> str:
    """A raw label as a person reads it: ``fearful (06)`` where the corpus's codes have names
    (a recipe's ``RAW_LABELS``), else the label itself (IEMOCAP's ``fru``, CREMA-D's ``DIS``)."""
    name = getattr(RECIPES.get(corpus), "RAW_LABELS", {}).get(raw)
    return f"{name} ({raw})" if name else raw


def dropped_text(corpus: str, manifest: Manifest) -> str | None:
    """``ravdess: label map ravdess-4class-nocalm dropped 768 of 1,440 utterances: calm (02) 192,
    ...``, or None when it dropped none."""
    if not manifest.dropped:
        return None
    n = sum(manifest.dropped.values())
    what = ", ".join(f"{raw_label_text(corpus, raw)} {k}" for raw, k in sorted(manifest.dropped.items()))
    return (f"{corpus}: label map {manifest.label_map} dropped {n:,} of {n + len(manifest):,} utterances "
            f"(their labels are not in its classes): {what}")


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
