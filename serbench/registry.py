"""Registry of backbones (``registry/models/*.yaml``) and compression recipes (``registry/recipes``).

An entry is data: adding a model or a recipe is adding one YAML file to any folder that
:func:`serbench.paths.registry_dirs` searches, with no code change. Entries are validated when
loaded, so a typo fails at once with the file and the field named, not deep inside an export.
Each entry keeps its parsed content (``content``) so that caches can hash exactly what it says.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from serbench import schema
from serbench.errors import SerbenchError
from serbench.paths import find_yaml, registry_dirs, yaml_files
from serbench.schema import Field, non_empty, positive, within

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

# What each option's value may be. compress.py looks the onnxruntime names up in
# onnxruntime.quantization's QuantType / QuantFormat / CalibrationMethod enums (QuantType[...]), so a
# misspelt name (QUint8) must fail here, at load, not as a KeyError in the middle of `bench`.
# Only the 8-bit QuantTypes: the recipes are int8 ones (tests check these names exist in onnxruntime).
ORT_QUANT_TYPES = ("QInt8", "QUInt8")
ORT_QUANT_FORMATS = ("QDQ", "QOperator")
ORT_CALIBRATE_METHODS = ("MinMax", "Entropy", "Percentile", "Distribution")
_CLIPS = Field("max_calibration_clips", int, check=positive)
RECIPE_OPTIONS: dict[str, dict[str, Field]] = {
    "onnxruntime": {f.name: f for f in (
        Field("opset", int, check=positive),
        Field("keep_io_types", bool),
        Field("weight_type", str, choices=ORT_QUANT_TYPES),
        Field("activation_type", str, choices=ORT_QUANT_TYPES),
        Field("quant_format", str, choices=ORT_QUANT_FORMATS),
        Field("calibrate_method", str, choices=ORT_CALIBRATE_METHODS),
        Field("calibrate_percentile", float, check=within(0, 100)),
        Field("per_channel", bool),
        Field("reduce_range", bool),
        Field("weight_matmuls_only", bool),
        Field("op_types_to_quantize", list, items=str),
        Field("nodes_to_exclude", list, items=str),
        _CLIPS,
    )},
    # passed to neural_compressor.torch.quantization.StaticQuantConfig(**options)
    "neural-compressor": {f.name: f for f in (
        Field("w_dtype", str), Field("act_dtype", str),
        Field("w_sym", bool), Field("act_sym", bool),
        Field("w_granularity", str, choices=("per_channel", "per_tensor")),
        Field("act_granularity", str, choices=("per_channel", "per_tensor")),
        Field("w_algo", str), Field("act_algo", str),
        Field("clip_seconds", float, check=positive),
        _CLIPS,
    )},
}

# The encoder's input preprocessing (serbench.audio.Preprocess, sample_rate aside) and its
# defaults, the reference paper's. Written out, not imported: importing serbench.audio pulls in
# librosa, and listing the registry must stay fast (a test checks these match Preprocess).
PREPROCESS_DEFAULTS = {"trim_db": 20.0, "preemphasis": 0.97, "peak": 0.95, "seconds": 8.0}
_INPUT_CHECKS = {"trim_db": positive, "preemphasis": within(0, 1), "peak": within(0, 1), "seconds": positive}
INPUT_FIELDS = tuple(Field(k, float, nullable=True, default=v, check=_INPUT_CHECKS[k])
                     for k, v in PREPROCESS_DEFAULTS.items())


def _identifier(v: str) -> str | None:
    return None if v.isidentifier() else f"must be a transformers class name, got {v!r}"


_MODEL_KIND = Field("kind", str, default="transformers", choices=MODEL_KINDS)
MODEL_FIELDS = (
    Field("name", str),
    _MODEL_KIND,
    Field("description", str, default=""),
    Field("licence", str, required=True),
    Field("sample_rate", int, default=16_000, check=positive),
    # null for a step switches it off; omitted steps keep the defaults
    Field("input", dict, fields=INPUT_FIELDS),
    # the default classifier head (its name is checked against the heads registry when used)
    Field("head", str, check=non_empty),
)
MODEL_KIND_FIELDS = {
    # Whether transformers has this class is checked when the model is built: importing
    # transformers (and torch) here would make listing the registry take seconds.
    "transformers": (
        Field("hub_id", str),
        Field("revision", (str, int), default="main"),
        Field("model_class", str, required=True, check=_identifier),
        Field("config", dict, required=True),
        Field("params", int, required=True,
              check=lambda v: None if v > 0 else f"must be a positive parameter count, got {v}"),
        Field("normalize", bool, default=False),
    ),
    "opensmile": (
        Field("feature_set", str, required=True),
        Field("feature_level", str, default="Functionals"),
        Field("dim", int, required=True, check=positive),
    ),
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
    # every serbench.audio.Preprocess field but sample_rate, resolved (None = step off), so that
    # audio.Preprocess(sample_rate=entry.sample_rate, **entry.input) builds the encoder's input
    input: dict = field(default_factory=lambda: dict(PREPROCESS_DEFAULTS))
    head: str | None = None  # the default classifier head's name

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

    @property
    def is_reference(self) -> bool:
        """The uncompressed ONNX export: what probe heads are trained on and what every compressed
        recipe is compared with. Decided by method, not by the file's name."""
        return self.backend == "onnxruntime" and self.method == "fp32"


def reference_recipe() -> RecipeEntry:
    """The registry's reference recipe (``onnxruntime``/``fp32``; ``fp32`` if several are)."""
    found = [r for r in recipes() if r.is_reference]
    if not found:
        raise SerbenchError("no recipe with backend onnxruntime and method fp32 in the registry: "
                            "serbench needs one as the uncompressed reference")
    return next((r for r in found if r.name == "fp32"), found[0])


def _files(kind: str) -> dict[str, Path]:
    return yaml_files(registry_dirs(kind))


def model_files() -> dict[str, Path]:
    """Model names to files; a later registry folder overrides an earlier one."""
    return _files("models")


def recipe_files() -> dict[str, Path]:
    return _files("recipes")


def load_model(name: str) -> ModelEntry:
    """Load and validate a model entry by name (or from a YAML path)."""
    path = find_yaml(name, model_files(), "model")
    data = schema.read(path)
    data["name"] = schema.check_name(data, path)
    kind = schema.value(data, _MODEL_KIND, path)  # which fields are known depends on the kind
    values = schema.validate(data, MODEL_FIELDS + MODEL_KIND_FIELDS[kind], path)
    if kind == "transformers":
        values["revision"] = str(values["revision"])
    return ModelEntry(path=path, content=data, **values)


def _options(backend: str, method: str) -> tuple[Field, ...]:
    return tuple(RECIPE_OPTIONS[backend][o] for o in sorted(RECIPE_METHODS[backend][method]))


def load_recipe(name: str) -> RecipeEntry:
    """Load and validate a recipe entry by name (or from a YAML path)."""
    path = find_yaml(name, recipe_files(), "recipe")
    data = schema.read(path)
    data["name"] = schema.check_name(data, path)
    backend = schema.value(data, Field("backend", str, required=True, choices=tuple(RECIPE_METHODS)), path)
    methods = RECIPE_METHODS[backend]
    fields = (
        Field("name", str),
        Field("description", str, default=""),
        Field("backend", str),
        Field("method", str, required=True, check=lambda m: None if m in methods else (
            f"must be one of {', '.join(methods)} for backend {backend!r}, got {m!r}" + schema.suggest(m, methods))),
        # calibration defaults to the method's need (static quantisation calibrates)
        Field("calibration", bool),
        Field("options", dict),
    )
    values = schema.validate(data, fields, path)
    # options are checked once the method is known: each method has its own option names
    options = schema.validate(values["options"] or {}, _options(backend, values["method"]), path, "options.")
    return RecipeEntry(path=path, content=data, name=values["name"], backend=backend, method=values["method"],
                       description=values["description"],
                       calibration=(values["method"] == "static" if values["calibration"] is None
                                    else values["calibration"]),
                       options={k: options[k] for k in values["options"] or {} if options[k] is not None})


def models() -> list[ModelEntry]:
    """Every model entry, loaded and validated (a malformed one raises, naming its file)."""
    return [load_model(str(p)) for p in model_files().values()]


def recipes() -> list[RecipeEntry]:
    return [load_recipe(str(p)) for p in recipe_files().values()]
