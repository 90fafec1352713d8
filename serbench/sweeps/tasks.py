"""What a sweep's tasks do, on whichever process runs them (the driver, or a Ray worker).

Each task is a plain function of plain data (a :class:`~serbench.runner.RunSpec`, fold indices,
recipe names) returning plain data, so Ray can ship it anywhere. A worker rebuilds the cell's
:class:`~serbench.runner.Runner` from its spec once per process (corpora, folds, model: all
seeded, so every process gets the same) and reuses it for the cell's next tasks. No task writes
the results store: fold tasks return records that the driver writes.

Three kinds, in the order a cell needs them:

* ``build``: one compression artefact (per model x recipe; per fold too where the recipe is
  calibrated on each fold's training utterances). Content-addressed (:mod:`serbench.artefacts.cache`):
  on shared storage it is built once; a node that cannot see it builds the same bytes again.
* ``embed``: the reference (fp32) embeddings of a chunk of utterances, cached in the embedding
  cache and *returned*, so a fold task on another node primes its own cache from Ray's object
  store instead of recomputing them.
* ``fold``: one fold of one cell: head trained and selected on cached embeddings (or the backbone
  fine-tuned), every pending recipe scored on the test split; returns the store records.
"""
from __future__ import annotations

import dataclasses
import json

from serbench import embed as embedding
from serbench import paths, registry, runtime

_RUNNERS: dict[str, object] = {}


def spec_key(spec) -> str:
    """The identity of a cell's spec (and of the home it runs in)."""
    return json.dumps({"spec": dataclasses.asdict(spec), "home": str(paths.home())}, sort_keys=True, default=str)


def runner(spec):
    """The cell's prepared :class:`~serbench.runner.Runner`, built once per process."""
    from serbench.runner import Runner

    key = spec_key(spec)
    if key not in _RUNNERS:
        r = Runner(spec, progress=False, log=lambda *_: None)
        r._prepare()
        _RUNNERS[key] = r
    return _RUNNERS[key]


def build(spec, recipe: str, fold: int | None) -> str:
    """Build (or find) ``recipe``'s artefact for the cell (``fold``: whose training utterances
    calibrate it; ``None`` for an uncalibrated recipe); its folder."""
    r = runner(spec)
    return str(r.artefact(registry.load_recipe(recipe), None if fold is None else r.folds[fold]).path)


def embed(spec, keys: list[str], *built: str) -> dict:
    """The cell's reference embeddings of the utterances ``keys`` (cached here, and returned);
    ``built``: the reference artefact's build task's result (it is found or rebuilt here)."""
    r = runner(spec)
    key, enc, _ = r._encoder(r.fp32, None, (r.model, r.weights))
    return {"encoder_key": key, "files": r._files(keys), "X": r._embed(keys, enc, key, "")}


def fold(spec, index: int, recipes: list[str], *embedded: dict) -> list[dict]:
    """One fold of the cell for ``recipes``: :meth:`~serbench.runner.Runner.fold_records`, after
    priming this node's embedding cache with ``embedded`` (the embed tasks' results)."""
    r = runner(spec)
    for e in embedded:
        if isinstance(e, dict):   # an embed task's result (a build task's is its artefact's folder)
            embedding.prime(e["files"], e["X"], e["encoder_key"], r.preprocess)
    pending = [rec for rec in r.recipes if rec.name in recipes]
    return r.fold_records(r.folds[index], pending)


FUNCTIONS = {"build": build, "embed": embed, "fold": fold}


def call(kind: str, threads: int | None, args: tuple, *inputs):
    """Run task ``kind`` on ``args`` plus the results of the tasks it depends on (``inputs``),
    with ``threads`` CPU threads (``None``: the machine's): the entry point of every task,
    wherever it runs."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with runtime.using_threads(threads):
            return FUNCTIONS[kind](*args, *inputs)
    finally:
        torch.set_num_threads(before)
