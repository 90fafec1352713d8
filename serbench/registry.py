"""Registry of backbones (``registry/models/*.yaml``) and compression recipes (``registry/recipes``).

An entry is data: adding a model or a recipe is adding one YAML file to any folder that
:func:`serbench.paths.registry_dirs` searches, with no code change. Entries are validated when
loaded, so a typo fails at once with the file and the field named, not deep inside an export.
Each entry keeps its parsed content (``content``) so that caches can hash exactly what it says.

What an entry may say is declared by the code that acts on it, and read from there: a model's
fields by its kind (:data:`serbench.backbones.KINDS`), a recipe's methods and their options by
the compression backends (:mod:`serbench.artefacts.methods`). Nothing here lists them again.
"""
from __future__ import annotations

from pathlib import Path

from serbench import backbones, schema
from serbench.artefacts import methods
from serbench.entries import ModelEntry, RecipeEntry
from serbench.errors import SerbenchError
from serbench.paths import find_yaml, registry_dirs, yaml_files
from serbench.schema import Field, non_empty, positive, within

# The encoder's input preprocessing (serbench.audio.Preprocess, sample_rate aside) and its
# defaults, the reference paper's. Written out, not imported: importing serbench.audio pulls in
# librosa, and listing the registry must stay fast (a test checks these match Preprocess).
PREPROCESS_DEFAULTS = {"trim_db": 20.0, "preemphasis": 0.97, "peak": 0.95, "seconds": 8.0}
_INPUT_CHECKS = {"trim_db": positive, "preemphasis": within(0, 1), "peak": within(0, 1), "seconds": positive}
INPUT_FIELDS = tuple(Field(k, float, nullable=True, default=v, check=_INPUT_CHECKS[k])
                     for k, v in PREPROCESS_DEFAULTS.items())


_MODEL_KIND = Field("kind", str, default="transformers", choices=tuple(backbones.KINDS))
MODEL_FIELDS = (  # every kind's; each kind adds its own (serbench.backbones.KINDS)
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


def reference_recipe() -> RecipeEntry:
    """The registry's reference recipe: the first, in registry search order, whose method is the
    reference (``onnxruntime``/``fp32``). Chosen by method, never by file name; whatever uses it
    names it in its output."""
    found = next((r for r in recipes() if r.is_reference), None)
    if found is None:
        raise SerbenchError("no recipe with backend onnxruntime and method fp32 in the registry: "
                            "serbench needs one as the uncompressed reference")
    return found


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
    kind = backbones.KINDS[schema.value(data, _MODEL_KIND, path)]  # which fields are known depends on it
    values = schema.validate(data, MODEL_FIELDS + kind.fields, path)
    if values.get("revision") is not None:  # a hub revision may be written as a number
        values["revision"] = str(values["revision"])
    return ModelEntry(path=path, content=data, weight_free=kind.weight_free, **values)


def load_recipe(name: str) -> RecipeEntry:
    """Load and validate a recipe entry by name (or from a YAML path)."""
    path = find_yaml(name, recipe_files(), "recipe")
    data = schema.read(path)
    data["name"] = schema.check_name(data, path)
    backends = methods.backends()
    backend = schema.value(data, Field("backend", str, required=True, choices=tuple(backends)), path)
    known = backends[backend]
    fields = (
        Field("name", str),
        Field("description", str, default=""),
        Field("backend", str),
        Field("method", str, required=True, check=lambda m: None if m in known else (
            f"must be one of {', '.join(known)} for backend {backend!r}, got {m!r}" + schema.suggest(m, known))),
        # calibration defaults to the method's need (static quantisation calibrates)
        Field("calibration", bool),
        Field("options", dict),
    )
    values = schema.validate(data, fields, path)
    method = known[values["method"]]
    # options are checked once the method is known: each method has its own option names
    options = schema.validate(values["options"] or {}, sorted(method.options, key=lambda f: f.name), path,
                              "options.")
    return RecipeEntry(path=path, content=data, name=values["name"], backend=backend, method=method.name,
                       description=values["description"],
                       calibration=method.calibrated if values["calibration"] is None else values["calibration"],
                       options={k: options[k] for k in values["options"] or {} if options[k] is not None},
                       is_reference=method.reference)


def models() -> list[ModelEntry]:
    """Every model entry, loaded and validated (a malformed one raises, naming its file)."""
    return [load_model(str(p)) for p in model_files().values()]


def recipes() -> list[RecipeEntry]:
    return [load_recipe(str(p)) for p in recipe_files().values()]
