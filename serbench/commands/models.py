"""``serbench models [--recipes] [--json]``: list the registry's backbones (or recipes).

Entries are files under ``registry/models`` and ``registry/recipes`` (plus ``$SERBENCH_HOME/registry``
and ``$SERBENCH_REGISTRY``); every entry is validated while listing, so a malformed one is reported
with its file and field.
"""
from __future__ import annotations

import json

from tabulate import tabulate

from serbench import backbones, registry
from serbench.entries import ModelEntry, RecipeEntry


def register(sub) -> None:
    p = sub.add_parser("models", help="list registered backbones (or, with --recipes, compression recipes); "
                                      "`serbench list` lists protocols, label maps and heads too")
    p.add_argument("--recipes", action="store_true", help="list compression recipes instead of models")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.set_defaults(func=run)


def _model_row(e: ModelEntry) -> dict:
    return {"name": e.name, "kind": e.kind, "class": e.model_class or "-", "source": backbones.source(e),
            "params": e.params, "dim": e.dim, "normalize": e.normalize, "positions": e.positions,
            "licence": e.licence,
            "description": e.description, "file": str(e.path)}


def _recipe_row(r: RecipeEntry) -> dict:
    return {"name": r.name, "backend": r.backend, "method": r.method, "calibration": r.calibration,
            "options": r.options, "description": r.description, "file": str(r.path)}


def run(args) -> int:
    rows = ([_recipe_row(r) for r in registry.recipes()] if args.recipes
            else [_model_row(e) for e in registry.models()])
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if args.recipes:
        table = [(r["name"], r["backend"], r["method"], "yes" if r["calibration"] else "no", r["description"])
                 for r in rows]
        print(tabulate(table, headers=["recipe", "backend", "method", "calibrated", "description"]))
    else:
        table = [(r["name"], r["kind"], r["source"],
                  f"{r['params'] / 1e6:.2f} M" if r["params"] else f"{r['dim']} features", r["licence"])
                 for r in rows]
        print(tabulate(table, headers=["model", "kind", "weights source", "size", "licence"]))
    return 0
