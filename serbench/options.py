"""What the front door's functions and the commands take: one table of :class:`~serbench.schema.Field`
per function, checked by :func:`check` before any work is done.

The command line parses strings into numbers (argparse) and calls :mod:`serbench.api`, which checks
its keyword arguments here; so ``serbench run --epochs 0`` and ``serbench.run(..., epochs=0)`` fail
with the same message, ``option 'epochs' (--epochs): must be positive, got 0``, naming the range.
The training configurations' fields (:data:`FINETUNE`, :data:`PROBE`) are declared here too, once:
:class:`~serbench.finetune.FinetuneConfig` and :class:`~serbench.train.ProbeConfig` check
themselves against them (from Python, a head file or a grid alike), and ``--epochs`` is
:data:`FINETUNE`'s ``epochs``. Types are strict: ``synthetic='no'`` is not true, ``repeats=2.0`` is not
an integer. The module imports nothing heavy: ``import serbench`` stays fast.
"""
from __future__ import annotations

import dataclasses
import os

from serbench import schema
from serbench.errors import SerbenchError
from serbench.schema import Field, at_least, non_empty, positive, within

MODES = ("probe", "finetune")                 # the runner's and the sweep grid's, declared here once
SYNTHETIC_SIZES = ("tiny", "small", "medium")  # serbench.synth.corpora.SIZES' keys (a test holds them equal:
                                               # importing serbench.synth here would load soundfile and soxr)
PATH = (str, os.PathLike)


def _callable(v) -> str | None:
    return None if callable(v) else f"must be a function, got {v!r}"


def _names(v) -> str | None:
    """A non-empty list of names, none twice (a recipe given twice would be two runs of one key)."""
    if not v:
        return "must name at least one"
    for i, name in enumerate(v):
        if not isinstance(name, str) or not name.strip():
            return f"must be names, got {name!r} at position {i + 1}"
    twice = sorted({n for n in v if list(v).count(n) > 1})
    return f"lists {', '.join(map(repr, twice))} twice" if twice else None


def _mapping(what: str, values: tuple[type, ...]):
    def check(v) -> str | None:
        for k, x in v.items():
            if not isinstance(k, str) or not k or not isinstance(x, values) or isinstance(x, bool):
                return f"must map corpus names to {what}, got {k!r}: {x!r}"
        return None
    return check


def _finetune_config(v) -> str | None:
    # by name, not isinstance: serbench.finetune imports this module for its fields (no import loop)
    kind = type(v)
    ok = dataclasses.is_dataclass(v) and (kind.__module__, kind.__name__) == ("serbench.finetune", "FinetuneConfig")
    return None if ok else f"must be a serbench.finetune.FinetuneConfig, got {v!r}"


def _fraction(v) -> str | None:
    return None if 0 <= v < 1 else f"must be in [0, 1), got {v!r}"


SEED = Field("seed", int, check=schema.seed, flag="--seed")
THREADS = Field("threads", int, nullable=True, check=positive, flag="--threads")
LOG = Field("log", nullable=True, check=_callable)
HOME = Field("home", PATH, nullable=True)
WEIGHTS = Field("weights", str, check=non_empty, flag="--weights")
MODEL = Field("model", str, required=True, check=non_empty, flag="--model")
RECIPES = Field("recipes", (list, tuple), check=_names, flag="--recipe")
#: the equivalence margin of every verdict, in UA points (serbench.fmt.EQUIVALENCE_MARGIN's default)
MARGIN = Field("margin", float, nullable=True, check=within(0, 100, lo_open=False, hi_open=True), flag="--margin")


# -- training configurations (types and ranges; the defaults are the dataclasses') ---------------

FINETUNE = (
    Field("lr", float, check=positive), Field("epochs", int, check=positive, flag="--epochs"),
    Field("batch_size", int, check=positive), Field("weight_decay", float, check=at_least(0)),
    Field("warmup", float, check=_fraction), Field("patience", int, check=positive),
    Field("gamma", float, check=at_least(0)), Field("label_smoothing", float, check=_fraction),
    Field("augment", bool), Field("hidden", int, check=positive), Field("dropout", float, check=_fraction),
    Field("seed", int, check=schema.seed), Field("device", str, nullable=True, check=non_empty),
    Field("freeze_feature_encoder", bool),
)
PROBE = (
    Field("hidden", int, check=positive), Field("dropout", float, check=_fraction),
    Field("lr", float, check=positive), Field("weight_decay", float, check=at_least(0)),
    Field("layer_lr", float, check=positive), Field("batch_size", int, check=positive),
    Field("max_epochs", int, check=positive), Field("patience", int, check=positive),
    Field("gamma", float, check=at_least(0)), Field("label_smoothing", float, check=_fraction),
    Field("seed", int, check=schema.seed), Field("threads", int, nullable=True, check=positive),
)
_EPOCHS = next(f for f in FINETUNE if f.name == "epochs")


# -- the front door's functions -------------------------------------------------------------------

RUN = (
    MODEL, Field("protocol", PATH, required=True, flag="--protocol"), RECIPES,
    HOME, Field("store", PATH, nullable=True, flag="--store"), Field("resume", bool, flag="--resume"),
    Field("progress", bool, nullable=True), LOG,
    Field("mode", str, choices=MODES, flag="--mode"), WEIGHTS,
    Field("corpus", str, check=non_empty, flag="--corpus"),
    Field("label_maps", dict, check=_mapping("label map names", (str,)), flag="--label-map"),
    Field("head", str, check=non_empty, flag="--head"),
    Field("data", dict, check=_mapping("folder paths", PATH), flag="--data"),
    Field("synthetic", bool, flag="--synthetic"),
    Field("synthetic_size", str, choices=SYNTHETIC_SIZES, flag="--synthetic-size"),
    dataclasses.replace(SEED, nullable=True),   # None: the protocol's seed
    Field("calibration_clips", int, check=positive), Field("measure", bool, flag="--no-measure"),
    Field("n_resamples", int, check=positive), Field("finetune", check=_finetune_config), _EPOCHS, MARGIN,
)

BENCH = (
    MODEL, RECIPES, WEIGHTS, HOME,
    Field("repeats", int, check=positive, flag="--repeats"), Field("warmup", int, check=at_least(0), flag="--warmup"),
    THREADS, Field("probe", int, check=at_least(2), flag="--probe"),
    Field("calibration", int, check=positive, flag="--calibration"),
    Field("country", str, check=non_empty, flag="--country"),
    Field("energy", bool, flag="--no-energy"), Field("rss", bool, flag="--no-rss"),
    Field("min_fidelity", float, check=within(-1, 1, lo_open=False), flag="--min-fidelity"),
    Field("slower_tolerance", float, check=at_least(0), flag="--slower-tolerance"),
    Field("probe_data", str, check=non_empty, flag="--probe-data"), SEED, LOG,
)

TUNE_METRICS = ("fidelity", "ua")   # serbench.mixed_precision.Target's metrics
TUNE = (
    MODEL, Field("recipe", str, required=True, check=non_empty, flag="--recipe"),
    Field("min_fidelity", float, nullable=True, check=within(0, 1), flag="--min-fidelity"), WEIGHTS, HOME,
    Field("metric", str, choices=TUNE_METRICS, flag="--metric"),
    Field("max_ua_drop", float, nullable=True, check=within(0, 100, lo_open=False, hi_open=True), flag="--max-ua-drop"),
    Field("protocol", PATH, nullable=True, flag="--protocol"),
    Field("data", dict, nullable=True, check=_mapping("folder paths", PATH), flag="--data"),
    Field("synthetic", bool, flag="--synthetic"),
    Field("synthetic_size", str, choices=SYNTHETIC_SIZES, flag="--synthetic-size"),
    Field("name", str, check=non_empty, flag="--name"), Field("out", PATH, flag="--out"),
    Field("force", bool, flag="--force"), Field("probe", int, nullable=True, check=at_least(2), flag="--probe"),
    Field("calibration", int, check=positive, flag="--calibration"),
    Field("probe_data", str, check=non_empty, flag="--probe-data"), dataclasses.replace(SEED, nullable=True),
    Field("repeats", int, check=positive, flag="--repeats"), THREADS, LOG,
)

COMPARE = (
    Field("store", PATH, nullable=True, flag="--store"), Field("runs", (list, tuple), nullable=True, flag="--runs"),
    Field("out", PATH, nullable=True, flag="--out"), Field("figures", bool), Field("force", bool, flag="--force"),
    HOME, MARGIN,
)

SWEEP = (
    Field("grid", PATH, required=True), Field("ray", str, check=non_empty, flag="--ray"),
    Field("resume", bool, flag="--resume"), Field("synthetic", bool, flag="--synthetic"), HOME,
    Field("store", PATH, nullable=True, flag="--store"), Field("progress", bool, nullable=True), LOG,
    Field("ray_cpus", int, check=positive, flag="--ray-cpus"),
    Field("cpus_per_task", int, check=positive, flag="--cpus-per-task"),
)

# serbench infer / serbench.analyse: serbench.runtime.Options' fields (the standalone runtime
# cannot import serbench, so its own Options.check stays the last guard for a model folder's infer.py)
ANALYSE = (
    Field("model_dir", PATH, required=True), Field("files", (list, tuple), required=True, items=PATH), THREADS,
    Field("vad", bool, flag="--no-vad"), Field("window", float, check=positive, flag="--window"),
    Field("hop", float, check=positive, flag="--hop"), Field("min_speech", float, check=positive, flag="--min-speech"),
    Field("block_seconds", float, check=positive), Field("vad_threshold", float, check=within(0, 1, hi_open=True)),
)


def check(fields, given: dict) -> dict:
    """``given`` (a function's keyword arguments) checked against its table: ``{name: value}`` of
    those given (:func:`serbench.schema.options`)."""
    return schema.options(given, fields)


def check_run(given: dict) -> dict:
    """:data:`RUN`, plus what no single option can say: options that contradict each other."""
    out = check(RUN, given)
    if out.get("synthetic") and out.get("data"):
        raise SerbenchError(f"--synthetic and --data {', '.join(out['data'])}=... contradict each other: "
                            "--synthetic runs on the built-in synthetic corpora, so the folders given would be "
                            "ignored; give one or the other")
    return out
