"""Registry of backbones (``registry/models/*.yaml``) and compression recipes (``registry/recipes``).

An entry is data: adding a model or a recipe is adding one YAML file to any folder that
:func:`serbench.paths.registry_dirs` searches, with no code change. Entries are validated when
loaded, so a typo fails at once with the file and the field named, not deep inside an export.
Each entry keeps its parsed content (``content``) so that caches can hash exactly what it says.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from serbench.errors import SerbenchError
from serbench.paths import find_yaml, registry_dirs, yaml_files

MODEL_KINDS = ("transformers", "opensmile")
# backend -> method -> the option names that method understands (anything else is a typo).
RECIPE_METHODS: dict[str, dict[str, set[str]]] = {
    "onnxruntime": {
        "fp32": {"opset"},
        "fp16": {"opset", "keep_io_types"},
        "dynamic": {"opset", "weight_type", "op_types_to_quantize", "per_channel", "reduce_range"},
        "static": {"opset", "quant_format", "per_channel", "op_types_to_quantize", "activation_type",
                   "weight_type", "calibrate_method", "calibrate_percentile", "reduce_range",
                   "max_calibration_clips", "nodes_to_exclude", "weight_matmuls_only"},
    },
    "neural-compressor": {
        "static": {"w_dtype", "w_sym", "w_granularity", "w_algo", "act_dtype", "act_sym",
                   "act_granularity", "act_algo", "clip_seconds", "max_calibration_clips"},
    },
}


@dataclass(frozen=True)
class ModelEntry:
    """A backbone: where its weights live, how to build it offline, what it should weigh."""

    name: str
    kind: str
    path: Path
    content: dict = field(repr=False)
    description: str = ""
    licence: str = ""
    hub_id: str | None = None
    revision: str | None = None
    model_class: str | None = None
    config: dict = field(default_factory=dict)
    params: int | None = None
    normalize: bool = False
    sample_rate: int = 16_000
    feature_set: str | None = None
    feature_level: str | None = None
    dim: int | None = None

    @property
    def weight_free(self) -> bool:
        return self.kind == "opensmile"


@dataclass(frozen=True)
class RecipeEntry:
    """A compression recipe: which backend, which method, with which options."""

    name: str
    backend: str
    method: str
    path: Path
    content: dict = field(repr=False)
    description: str = ""
    calibration: bool = False
    options: dict = field(default_factory=dict)


def _files(kind: str) -> dict[str, Path]:
    return yaml_files(registry_dirs(kind))


def model_files() -> dict[str, Path]:
    """Model names to files; a later registry folder overrides an earlier one."""
    return _files("models")


def recipe_files() -> dict[str, Path]:
    return _files("recipes")


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SerbenchError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SerbenchError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    name = data.get("name", path.stem)
    if name != path.stem:
        raise SerbenchError(f"{path}: field 'name' is {name!r} but the file is named {path.stem!r}; "
                            "they must match so that the entry can be found by name")
    data["name"] = path.stem
    return data


def _get(data: dict, path: Path, key: str, types, required: bool = False, default: Any = None):
    if key not in data or data[key] is None:
        if required:
            raise SerbenchError(f"{path}: missing required field {key!r}")
        return default
    value = data[key]
    if not isinstance(value, types) or (types is int and isinstance(value, bool)):
        want = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise SerbenchError(f"{path}: field {key!r} must be {want}, got {value!r}")
    return value


def load_model(name: str) -> ModelEntry:
    """Load and validate a model entry by name (or from a YAML path)."""
    path = find_yaml(name, model_files(), "model")
    data = _read(path)
    kind = _get(data, path, "kind", str, default="transformers")
    if kind not in MODEL_KINDS:
        raise SerbenchError(f"{path}: field 'kind' must be one of {', '.join(MODEL_KINDS)}, got {kind!r}")
    common = dict(name=data["name"], kind=kind, path=path, content=data,
                  description=_get(data, path, "description", str, default=""),
                  licence=_get(data, path, "licence", str, required=True),
                  sample_rate=_get(data, path, "sample_rate", int, default=16_000))
    if kind == "opensmile":
        return ModelEntry(**common,
                          feature_set=_get(data, path, "feature_set", str, required=True),
                          feature_level=_get(data, path, "feature_level", str, default="Functionals"),
                          dim=_get(data, path, "dim", int, required=True))
    # Whether transformers has this class is checked when the model is built: importing
    # transformers (and torch) here would make listing the registry take seconds.
    model_class = _get(data, path, "model_class", str, required=True)
    if not model_class.isidentifier():
        raise SerbenchError(f"{path}: field 'model_class' must be a transformers class name, got {model_class!r}")
    params = _get(data, path, "params", int, required=True)
    if params <= 0:
        raise SerbenchError(f"{path}: field 'params' must be a positive parameter count, got {params}")
    return ModelEntry(**common,
                      hub_id=_get(data, path, "hub_id", str),
                      revision=str(_get(data, path, "revision", (str, int), default="main")),
                      model_class=model_class,
                      config=_get(data, path, "config", dict, required=True),
                      params=params,
                      normalize=_get(data, path, "normalize", bool, default=False))


def load_recipe(name: str) -> RecipeEntry:
    """Load and validate a recipe entry by name (or from a YAML path)."""
    path = find_yaml(name, recipe_files(), "recipe")
    data = _read(path)
    backend = _get(data, path, "backend", str, required=True)
    if backend not in RECIPE_METHODS:
        raise SerbenchError(f"{path}: field 'backend' must be one of {', '.join(RECIPE_METHODS)}, "
                            f"got {backend!r}")
    method = _get(data, path, "method", str, required=True)
    if method not in RECIPE_METHODS[backend]:
        raise SerbenchError(f"{path}: field 'method' must be one of "
                            f"{', '.join(RECIPE_METHODS[backend])} for backend {backend!r}, got {method!r}")
    options = _get(data, path, "options", dict, default={})
    unknown = set(options) - RECIPE_METHODS[backend][method]
    if unknown:
        raise SerbenchError(f"{path}: field 'options' has unknown option(s) {sorted(unknown)} for "
                            f"{backend}/{method}; allowed: {sorted(RECIPE_METHODS[backend][method])}")
    return RecipeEntry(name=data["name"], backend=backend, method=method, path=path, content=data,
                       description=_get(data, path, "description", str, default=""),
                       calibration=_get(data, path, "calibration", bool, default=method == "static"),
                       options=options)


def models() -> list[ModelEntry]:
    """Every model entry, loaded and validated (a malformed one raises, naming its file)."""
    return [load_model(str(p)) for p in model_files().values()]


def recipes() -> list[RecipeEntry]:
    return [load_recipe(str(p)) for p in recipe_files().values()]
