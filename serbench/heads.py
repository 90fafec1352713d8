"""Heads: what turns cached embeddings into class scores (``registry/heads/*.yaml``).

A head is a registry entry like a model or a recipe: a YAML file names its ``kind`` and options,
and adding one needs no code. A *kind* is registered here once, with the options it accepts (as
:class:`~serbench.schema.Field`s: type, range, default) and its fitting function side by side
(:func:`register`); loading, validation and dispatch all derive from that one table, so
``max_epochs: 0`` or a negative ``C`` is an error naming the file and the option at load.

Every head obeys the same rule: everything it learns (standardisation, regularisation strength,
layer weights, network weights) is fitted on the **training** split and chosen on the
**validation** split only. The test split is not an argument of :func:`fit`.

Whatever library fits a head (torch for ``mlp``, scikit-learn for the linear kinds), the result is
a small torch module taking embeddings ``(n, n_layers, dim)`` to logits. So prediction, saving the
head beside the store, and merging it into an exported ONNX graph are one code path for all kinds.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from serbench import metrics, schema, train
from serbench.errors import SerbenchError
from serbench.paths import find_yaml, registry_dirs, yaml_files
from serbench.schema import Field, positive

DEFAULT = "mlp"


@dataclass(frozen=True)
class HeadKind:
    """A registered kind: its options (fields with types, ranges and defaults), and how it is fitted."""

    name: str
    fields: tuple[Field, ...]
    fit: Callable

    @property
    def defaults(self) -> dict:
        return schema.validate({}, self.fields, self.name)


KINDS: dict[str, HeadKind] = {}


def register(name: str, fields):
    """Register ``fit(X_train, y_train, X_val, y_val, classes, options, seed) -> Fitted``."""
    def wrap(fn):
        KINDS[name] = HeadKind(name, tuple(fields), fn)
        return fn
    return wrap


@dataclass(frozen=True)
class HeadEntry:
    name: str
    kind: str
    path: Path
    content: dict = field(repr=False)
    description: str = ""
    options: dict = field(default_factory=dict)   # the kind's defaults, overridden by the file

    def record(self) -> dict:
        """What a run stores about its head (part of the run's configuration)."""
        return {"name": self.name, "kind": self.kind, "options": self.options}


@dataclass
class Fitted:
    """A fitted head: the torch module used for prediction and export, plus a JSON-ready record
    of how it was chosen (selected hyper-parameters, validation scores, layer weights)."""

    model: nn.Module
    summary: dict


def files() -> dict[str, Path]:
    return yaml_files(registry_dirs("heads"))


def load(name: str) -> HeadEntry:
    """A head entry by name (or from a YAML path), validated against its kind's options."""
    from serbench import schema

    path = find_yaml(name, files(), "head")
    data, values = schema.load_entry(path, [
        schema.Field("name", str), schema.Field("description", str, default=""),
        schema.Field("kind", str, required=True, choices=tuple(KINDS)),
        schema.Field("options", dict, default={})])
    kind = KINDS[values["kind"]]
    options = schema.validate(values["options"], kind.fields, path, "options.")   # the kind's defaults filled in
    return HeadEntry(name=values["name"], kind=kind.name, path=path, content=data,
                     description=values["description"], options=options)


def fit(entry: HeadEntry, X_train, y_train, X_val, y_val, classes, seed: int = 0) -> Fitted:
    """Fit ``entry`` on the training split, choosing among its settings on the validation split."""
    if len(y_val) == 0:
        raise SerbenchError("the validation split is empty; a head is chosen on validation")
    train.check_classes(classes, {"training": y_train, "validation": y_val})
    return KINDS[entry.kind].fit(X_train, y_train, X_val, y_val, list(classes), entry.options, seed)


# -- kinds --------------------------------------------------------------------------------------


@register("mlp", fields=[f for f in train.FIELDS if f.name != "seed"])   # ProbeConfig's; the seed is the run's
def _fit_mlp(X_train, y_train, X_val, y_val, classes, options, seed) -> Fitted:
    """Learned softmax-weighted sum of layers + small MLP, focal loss, early stopping on validation UA."""
    res = train.train_probe(X_train, y_train, X_val, y_val, classes, train.ProbeConfig(**{**options, "seed": seed}))
    return Fitted(res.model, res.summary())


class LinearHead(nn.Module):
    """Fixed layer pooling -> standardise -> linear: a fitted scikit-learn linear model as torch.

    ``pool`` weights the layers (uniform for ``layers: mean``, one-hot for ``last``); ``mean`` and
    ``scale`` are the StandardScaler's; ``linear`` holds the classifier's coefficients, so the
    logits equal scikit-learn's ``decision_function`` and their softmax its multinomial
    ``predict_proba``.
    """

    def __init__(self, n_layers: int, dim: int, n_classes: int):
        super().__init__()
        self.register_buffer("pool", torch.full((n_layers,), 1.0 / n_layers))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.linear = nn.Linear(dim, n_classes)

    def layer_weights(self) -> torch.Tensor:
        return self.pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.einsum("bld,l->bd", x, self.pool)
        return self.linear((pooled - self.mean) / self.scale)


LAYERS = ("mean", "last")


def _pool_weights(n_layers: int, how: str) -> np.ndarray:
    if how not in LAYERS:
        raise SerbenchError(f"head option 'layers' must be one of {', '.join(LAYERS)}, not {how!r}")
    w = np.zeros(n_layers, np.float32)
    if how == "mean":
        w[:] = 1.0 / n_layers
    else:
        w[-1] = 1.0
    return w


def _linear(make, X_train, y_train, X_val, y_val, classes, options, seed) -> Fitted:
    """Standardise + a linear model, ``C`` chosen on the validation split.

    scikit-learn's GridSearchCV does the choice with the validation split as its one fold
    (``PredefinedSplit``): the scaler and the model are fitted on training rows only and scored
    (UA) on validation rows; ties go to the smaller ``C``. With ``refit`` (default) the chosen
    setting is then refitted on training + validation, as GridSearchCV does: validation has done
    its job (choosing ``C``) and its speakers add data. The test split is never seen.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, X_val = train.as_3d(X_train, "X_train"), train.as_3d(X_val, "X_val")
    n_layers, dim = X_train.shape[1:]
    pool = _pool_weights(n_layers, options["layers"])
    yt, yv = metrics.encode(y_train, classes), metrics.encode(y_val, classes)
    train.check_classes(classes, {"training": yt, "validation": yv})
    X = np.einsum("nld,l->nd", np.concatenate([X_train, X_val]), pool).astype(np.float64)
    y = np.concatenate([yt, yv])
    grid = sorted(float(c) for c in (options["C"] if isinstance(options["C"], list) else [options["C"]]))
    search = GridSearchCV(Pipeline([("scale", StandardScaler()), ("model", make(options, seed))]),
                          {"model__C": grid}, scoring="balanced_accuracy", refit=False,
                          cv=PredefinedSplit(np.r_[np.full(len(yt), -1), np.zeros(len(yv), int)]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
        C = search.best_params_["model__C"]
        rows = slice(None) if options["refit"] else slice(0, len(yt))
        best = search.estimator.set_params(model__C=C).fit(X[rows], y[rows])
    scaler, clf = best.named_steps["scale"], best.named_steps["model"]
    head = LinearHead(n_layers, dim, len(classes))
    coef, intercept = np.atleast_2d(clf.coef_), np.atleast_1d(clf.intercept_)
    if len(classes) == 2:  # binary scikit-learn models keep one row: logits [0, z] give the same softmax
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    with torch.no_grad():
        head.pool.copy_(torch.from_numpy(pool))
        head.mean.copy_(torch.from_numpy(scaler.mean_.astype(np.float32)))
        head.scale.copy_(torch.from_numpy(scaler.scale_.astype(np.float32)))
        head.linear.weight.copy_(torch.from_numpy(coef.astype(np.float32)))
        head.linear.bias.copy_(torch.from_numpy(intercept.astype(np.float32)))
    head.eval()
    scores = [{"C": c, "val_ua": float(ua)} for c, ua in zip(grid, search.cv_results_["mean_test_score"])]
    return Fitted(head, {"selected": {"C": C}, "best_val_ua": float(search.best_score_), "grid": scores,
                         "refit_on": "train+val" if options["refit"] else "train",
                         "layer_weights": pool.tolist(), "options": options})


def _c_grid(v) -> str | None:
    """``C``: one positive number or a non-empty list of them (the grid chosen from on validation)."""
    grid = v if isinstance(v, list) else [v]
    bad = [c for c in grid if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < float("inf")]
    if not grid or bad:
        return f"must be a positive number or a non-empty list of them, got {v!r}"
    return None


def _linear_fields(C: list[float], max_iter: int) -> tuple[Field, ...]:
    return (Field("C", (float, list), default=C, check=_c_grid), Field("layers", str, default="mean", choices=LAYERS),
            Field("class_weight", str, default="balanced", nullable=True, choices=("balanced",)),
            Field("max_iter", int, default=max_iter, check=positive), Field("refit", bool, default=True))


@register("logreg", fields=_linear_fields([0.001, 0.01, 0.1, 1.0, 10.0, 100.0], 5000))
def _fit_logreg(*args) -> Fitted:
    """scikit-learn LogisticRegression (multinomial) on standardised features; C chosen on validation."""
    from sklearn.linear_model import LogisticRegression

    def make(o, seed):
        return LogisticRegression(class_weight=o["class_weight"], max_iter=o["max_iter"], random_state=seed)
    return _linear(make, *args)


@register("svm-linear", fields=_linear_fields([0.0001, 0.001, 0.01, 0.1, 1.0], 20000))
def _fit_svm(*args) -> Fitted:
    """scikit-learn LinearSVC (one-vs-rest) on standardised features; C chosen on validation.

    An SVM gives margins, not probabilities: the stored "probabilities" are the softmax of its
    decision values (argmax, hence every metric, is the SVM's own prediction)."""
    from sklearn.svm import LinearSVC

    def make(o, seed):
        return LinearSVC(class_weight=o["class_weight"], max_iter=o["max_iter"], random_state=seed)
    return _linear(make, *args)


# -- saving and loading a fitted head (beside the store; read by `serbench export`) ----------------


def dumps(fitted: nn.Module, classes, kind: str) -> bytes:
    """The fitted head as bytes (its kind, shapes, classes and state): what :func:`save` writes,
    and what a sweep's fold task hands back to the one process that writes files."""
    import io

    n_layers, dim = shape(fitted)
    buf = io.BytesIO()
    torch.save({"kind": kind, "state_dict": fitted.state_dict(), "classes": list(classes),
                "shape": [n_layers, dim]}, buf)
    return buf.getvalue()


def save(dumped: bytes, target: Path) -> None:
    """Write a head made by :func:`dumps` atomically (:func:`restore` reads it)."""
    from serbench import atomic

    atomic.write_bytes(target, dumped, what="trained head")


def restore(path: Path) -> tuple[nn.Module, list[str]]:
    """The saved head (eval mode) and its classes; heads saved before kinds existed are MLPs."""
    from serbench.train import LayerWeightedProbe

    saved = torch.load(str(path), map_location="cpu", weights_only=True)
    state, (n_layers, dim), classes = saved["state_dict"], saved["shape"], list(saved["classes"])
    if saved.get("kind", "mlp") == "mlp":
        head = LayerWeightedProbe(n_layers, dim, len(classes), hidden=state["head.0.weight"].shape[0])
    else:
        head = LinearHead(n_layers, dim, len(classes))
    head.load_state_dict(state)
    return head.eval(), classes


def shape(module: nn.Module) -> tuple[int, int]:
    """``(n_layers, dim)`` of the embeddings a fitted head takes."""
    if isinstance(module, LinearHead):
        return int(module.pool.shape[0]), int(module.mean.shape[0])
    return int(module.mean.shape[0]), int(module.mean.shape[1])
