"""``serbench list models|recipes|protocols|labelmaps|heads [--json]``: what serbench knows by name,
one line each, with the file it comes from.

Every name a command takes (``--model``, ``--recipe``, ``--protocol``, ``--label-map``, ``--head``)
is a file that one of these lists shows, so a user never has to read repository paths to learn
what to type. Listing validates each entry, so a malformed file is reported with its path and field.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from tabulate import tabulate

KINDS = ("models", "recipes", "protocols", "labelmaps", "heads")


def register(sub) -> None:
    p = sub.add_parser("list", help="list what serbench knows by name: models, recipes, protocols, label maps "
                                    "or heads, each with its description and file")
    p.add_argument("kind", choices=KINDS, help="what to list")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.set_defaults(func=run)


def _first_comment(path: Path) -> str:
    """The first sentence of a file's leading comment block: the description of a kind whose YAML
    has no description field (label maps)."""
    block = []
    for line in Path(path).read_text().splitlines():
        if not line.startswith("#"):
            break
        block.append(line.lstrip("#").strip())
    text = " ".join(block)
    end = re.search(r"\.\s+(?=[A-Z])", text)   # "i.e. neutral" does not end it
    return text if end is None else text[:end.start() + 1]


def rows(kind: str) -> list[dict]:
    """Plain rows for ``kind``; the first three keys are what the table shows beside the file."""
    from serbench import heads, labels, protocols, registry

    if kind == "models":
        from serbench.commands.models import _model_row

        return [_model_row(e) for e in registry.models()]
    if kind == "recipes":
        from serbench.commands.models import _recipe_row

        return [_recipe_row(r) for r in registry.recipes()]
    if kind == "protocols":
        out = []
        for name, path in sorted(protocols.available().items()):
            p = protocols.load(path)
            out.append({"name": name, "corpora": ", ".join(p.corpora), "description": p.description,
                        "file": str(path)})
        return out
    if kind == "labelmaps":
        out = []
        for name, path in sorted(labels.available().items()):
            m = labels.load(path)
            out.append({"name": name, "classes": ", ".join(m.classes) if m.classes else "(as in the corpus)",
                        "description": _first_comment(path), "file": str(path)})
        return out
    out = []
    for name, path in sorted(heads.files().items()):
        h = heads.load(name)
        out.append({"name": name, "kind": h.kind, "description": h.description, "file": str(path)})
    return out


def run(args) -> int:
    got = rows(args.kind)
    if args.json:
        print(json.dumps(got, indent=2, default=str))
        return 0
    second = {"models": "kind", "recipes": "method", "protocols": "corpora", "labelmaps": "classes",
              "heads": "kind"}[args.kind]
    print(tabulate([(r["name"], r[second], r["description"], r["file"]) for r in got],
                   headers=[args.kind[:-1] if args.kind != "labelmaps" else "label map", second, "description",
                            "file"], disable_numparse=True))
    return 0
