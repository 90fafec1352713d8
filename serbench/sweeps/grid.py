"""A sweep's grid file: which models, recipes, protocols, heads, modes and seeds, on which data.

Data, like a protocol: every key is checked (:mod:`serbench.schema`), so a typo is an error naming
the file and the field. The grid is the product models x protocols x heads x modes x seeds; each
of those cells is one ``serbench run`` (:class:`serbench.runner.RunSpec`) over all the grid's
recipes, so every (model, recipe, protocol, ...) point becomes one run in the store. A weight-free
model (``egemaps``) has nothing to compress: its cells take only the reference recipe::

    # examples/grid.yaml
    models: [egemaps, {name: distilhubert, weights: "random:0"}]   # a name, or name + weights
    recipes: [fp32, static-int8]
    protocols: [speaker-kfold, kfold-random]
    heads: [null]             # null: each model entry's own head (default)
    modes: [probe]            # probe | finetune
    seeds: [null]             # null: each protocol's seed (default)
    weights: hub              # for models listed by name (default hub)
    data: {ravdess: /data/ravdess}   # corpus folders; or synthetic: true
    synthetic: false
    synthetic_size: small     # tiny | small | medium
    label_maps: {}            # corpus -> label map, as --label-map
    measure: true             # latency/memory/energy per run, after every task is done
    calibration_clips: 32
    epochs: null              # fine-tune epochs (null: the trainer's default)
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from serbench import options, registry, schema
from serbench.errors import SerbenchError
from serbench.schema import Field

MODES, SIZES = options.MODES, options.SYNTHETIC_SIZES


def _names(v) -> str | None:
    return None if v and all(isinstance(x, str) and x for x in v) else "must be a non-empty list of names"


def _nullable_names(v) -> str | None:
    return None if v and all(x is None or (isinstance(x, str) and x) for x in v) else \
        "must be a non-empty list of names (null: the default)"


def _seeds(v) -> str | None:
    ok = v and all(x is None or (isinstance(x, int) and not isinstance(x, bool)) for x in v)
    return None if ok else "must be a non-empty list of integers (null: the protocol's seed)"


def _modes(v) -> str | None:
    return None if v and all(x in MODES for x in v) else f"must be a non-empty list of {' | '.join(MODES)}"


FIELDS = (
    Field("models", list, required=True, check=lambda v: None if v else "must list at least one model"),
    Field("recipes", list, required=True, check=_names),
    Field("protocols", list, required=True, check=_names),
    Field("heads", list, default=[None], check=_nullable_names),
    Field("modes", list, default=["probe"], check=_modes),
    Field("seeds", list, default=[None], check=_seeds),
    Field("weights", str, default="hub"),
    Field("data", dict, default={}),
    Field("synthetic", bool, default=False),
    Field("synthetic_size", str, default="small", choices=SIZES),
    Field("label_maps", dict, default={}),
    Field("measure", bool, default=True),
    Field("calibration_clips", int, default=32, check=schema.positive),
    Field("epochs", int, nullable=True, check=schema.positive),
)
MODEL_FIELDS = (Field("name", str, required=True, check=schema.non_empty), Field("weights", str))


@dataclass(frozen=True)
class Grid:
    """A validated grid file (:data:`FIELDS`); :meth:`cells` is what a sweep runs."""

    path: str
    values: dict

    def models(self) -> list[tuple[str, str]]:
        """``(model entry, weights spec)`` for each listed model."""
        out = []
        for i, m in enumerate(self.values["models"]):
            if isinstance(m, str):
                out.append((m, self.values["weights"]))
            else:
                v = schema.validate(m, MODEL_FIELDS, self.path, f"models[{i}].")
                out.append((v["name"], v["weights"] or self.values["weights"]))
        return out

    def cells(self, synthetic: bool | None = None) -> list:
        """One :class:`~serbench.runner.RunSpec` per model x protocol x head x mode x seed.
        ``synthetic`` (the command line's ``--synthetic``) overrides the file's."""
        from serbench.finetune import FinetuneConfig
        from serbench.runner import RunSpec

        v = self.values
        recipes = [registry.load_recipe(r) for r in v["recipes"]]   # an unknown recipe fails here
        epochs = {"epochs": v["epochs"]} if v["epochs"] else {}
        out = []
        for (model, weights), protocol, head, mode, seed in itertools.product(
                self.models(), v["protocols"], v["heads"], v["modes"], v["seeds"]):
            entry = registry.load_model(model)
            names = [r.name for r in recipes if r.is_reference or not entry.weight_free]
            if not names:
                names = [registry.reference_recipe().name]
            if entry.weight_free and mode == "finetune":
                continue   # nothing to fine-tune: the probe cell covers it
            out.append(RunSpec(
                model=model, protocol=protocol, recipes=tuple(names), mode=mode,
                weights="hub" if entry.weight_free else weights, label_maps=dict(v["label_maps"]),
                head=head, data={k: Path(p).expanduser() for k, p in v["data"].items()},
                synthetic=v["synthetic"] if synthetic is None else synthetic,
                synthetic_size=v["synthetic_size"], seed=seed, calibration_clips=v["calibration_clips"],
                measure=v["measure"], finetune=FinetuneConfig(**epochs)))
        if not out:
            raise SerbenchError(f"{self.path}: the grid has no cell to run")
        return out


def load(path: str | Path) -> Grid:
    """Read and validate a grid file; an error names the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise SerbenchError(f"grid file {path} not found")
    values = schema.validate(schema.read(path), FIELDS, path)
    for k, p in values["data"].items():
        if not isinstance(k, str) or not isinstance(p, str):
            raise schema.error(path, "data", "must map corpus names to folder paths")
    for k, m in values["label_maps"].items():
        if not isinstance(k, str) or not isinstance(m, str):
            raise schema.error(path, "label_maps", "must map corpus names to label map names")
    grid = Grid(str(path), values)
    grid.models()   # model mappings validated now, not mid-sweep
    return grid
