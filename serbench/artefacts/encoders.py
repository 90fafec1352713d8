"""Open any artefact as an encoder: ``embed(wave) -> (n_layers, dim)``, pooled per layer.

The encoder is the one its compression method declares (:mod:`serbench.artefacts.methods`), found
from the recipe the artefact records, so a new method brings its encoder with it.
"""
from __future__ import annotations

from pathlib import Path

from serbench.artefacts.cache import Artefact, load
from serbench.errors import SerbenchError


def open_encoder(artefact: Artefact | str | Path, threads: int | None = None):
    """An encoder with ``embed(wave) -> (n_layers, dim)`` for an artefact (or its folder)."""
    if not isinstance(artefact, Artefact):
        artefact = load(artefact)
    method = artefact.method
    if artefact.format != method.format:
        raise SerbenchError(f"{artefact.path}: artefact format {artefact.format!r} is not what "
                            f"{method.backend}/{method.name} builds ({method.format!r}); build it again")
    return method.encoder(artefact, threads)
