"""Label maps: data files that turn a corpus's raw labels into the benchmark's classes.

A map lives in ``registry/labelmaps/<name>.yaml`` (``name``, ordered ``classes``, ``map`` from raw
label to class, optional ``description``). Raw labels absent from ``map`` are dropped, and the
manifest counts them, so a protocol's class set is visible and switchable without touching code.
``map: null`` keeps every raw label as its own class; it must be written out, so that a misspelt
``map`` key (``mapping:``) is an error rather than a silent identity map.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serbench import schema
from serbench.errors import SerbenchError
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
        for raw, cls in mapping.items():
            if not isinstance(cls, (str, int)) or isinstance(cls, bool):
                raise schema.error(path, f"map.{raw}", f"must be a class name, got {cls!r}")
        mapping = {str(k): str(v) for k, v in mapping.items()}
        if classes is None:
            classes = sorted(set(mapping.values()))
        missing = set(mapping.values()) - set(map(str, classes))
        if missing:
            raise SerbenchError(f"{path}: 'map' targets {sorted(missing)} not listed in 'classes'")
    return LabelMap(
        name=values["name"],
        classes=tuple(map(str, classes)) if classes is not None else None,
        mapping=mapping,
    )
