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
from serbench.paths import find_yaml, registry_dirs, yaml_files


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
