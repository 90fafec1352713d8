"""Label maps: data files that turn a corpus's raw labels into the benchmark's classes.

A map lives in ``registry/labelmaps/<name>.yaml`` (``name``, ordered ``classes``, ``map`` from raw
label to class). Raw labels absent from ``map`` are dropped, and the manifest counts them, so a
protocol's class set is visible and switchable without touching code. ``map: null`` keeps every
raw label as its own class.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from serbench.errors import SerbenchError
from serbench.paths import registry_dirs


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
    found: dict[str, Path] = {}
    for folder in registry_dirs("labelmaps"):
        for path in sorted(folder.glob("*.yaml")):
            found[path.stem] = path
    return found


def load(name_or_path: str | Path) -> LabelMap:
    """Load a label map by registry name or from a YAML file path."""
    path = Path(name_or_path)
    if not path.suffix == ".yaml" or not path.is_file():
        known = available()
        if str(name_or_path) not in known:
            raise SerbenchError(
                f"unknown label map {str(name_or_path)!r}; known: {', '.join(sorted(known))} "
                "(or give a path to a .yaml file)"
            )
        path = known[str(name_or_path)]
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SerbenchError(f"{path}: not valid YAML: {exc}") from exc
    mapping = data.get("map")
    classes = data.get("classes")
    if mapping is not None:
        if not isinstance(mapping, dict):
            raise SerbenchError(f"{path}: 'map' must be a mapping from raw label to class")
        mapping = {str(k): str(v) for k, v in mapping.items()}
        if classes is None:
            classes = sorted(set(mapping.values()))
        missing = set(mapping.values()) - set(map(str, classes))
        if missing:
            raise SerbenchError(f"{path}: 'map' targets {sorted(missing)} not listed in 'classes'")
    return LabelMap(
        name=str(data.get("name", path.stem)),
        classes=tuple(map(str, classes)) if classes is not None else None,
        mapping=mapping,
    )
