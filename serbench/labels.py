"""Label maps: data files that turn a corpus's raw labels into the benchmark's classes.

A map lives in ``registry/labelmaps/<name>.yaml`` (``name``, ordered ``classes``, ``map`` from raw
label to class, optional ``description``). Raw labels absent from ``map`` are dropped, and the
manifest counts them, so a protocol's class set is visible and switchable without touching code.
``map: null`` keeps every raw label as its own class; it must be written out, so that a misspelt
``map`` key (``mapping:``) is an error rather than a silent identity map. Raw labels, classes and
map keys are all compared in :func:`serbench.manifest.normalise`'s form (stripped, NFC), so a
map written ``"angry ": angry`` matches the corpus's ``angry``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serbench import schema
from serbench.errors import SerbenchError
from serbench.manifest import normalise
from serbench.paths import find_yaml, registry_dirs, yaml_files
from serbench.schema import Field


def _unique(v: list) -> str | None:
    return None if len(set(map(str, v))) == len(v) else "lists a class twice"


FIELDS = (
    Field("name", str),
    Field("description", str, default=""),
    Field("classes", list, nullable=True, items=(str, int), check=_unique),
    Field("map", dict, required=True, nullable=True),  # null: the identity map, said explicitly
)


@dataclass(frozen=True)
class LabelMap:
    name: str
    classes: tuple[str, ...] | None
    mapping: dict[str, str] | None

    def __call__(self, raw: str) -> str | None:
        """The class of ``raw``, or ``None`` when the map drops it."""
        if self.mapping is None:
            return raw
        return self.mapping.get(raw)


def available() -> dict[str, Path]:
    """Label-map names to files; later registry folders override earlier ones."""
    return yaml_files(registry_dirs("labelmaps"))


def load(name_or_path: str | Path) -> LabelMap:
    """Load a label map by registry name or from a YAML file path."""
    path = find_yaml(name_or_path, available(), "label map")
    _, values = schema.load_entry(path, FIELDS)
    mapping, classes = values["map"], values["classes"]
    if mapping is not None:
        normal: dict[str, str] = {}  # normalised raw label -> normalised class
        for raw, cls in mapping.items():
            if not isinstance(cls, (str, int)) or isinstance(cls, bool):
                raise schema.error(path, f"map.{raw}", f"must be a class name, got {cls!r}")
            key = normalise(raw)
            if normal.get(key, normalise(cls)) != normalise(cls):
                raise schema.error(path, f"map.{raw}", f"is {key!r} once spaces are stripped, which is "
                                                       f"mapped to {normal[key]!r}, not {cls!r}")
            normal[key] = normalise(cls)
        mapping = normal
        if classes is None:
            classes = sorted(set(mapping.values()))
    if classes is not None:
        classes = [normalise(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise schema.error(path, "classes", "lists a class twice once spaces are stripped")
    if mapping is not None:
        missing = set(mapping.values()) - set(classes)
        if missing:
            raise SerbenchError(f"{path}: 'map' targets {sorted(missing)} not listed in 'classes'")
    return LabelMap(
        name=values["name"],
        classes=tuple(classes) if classes is not None else None,
        mapping=mapping,
    )
