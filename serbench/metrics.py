"""Scores from predictions: UA, WA, macro-F1, per-class F1 and recall, confusion; fold aggregates.

SER papers report UA (unweighted accuracy = macro recall, what a class-imbalanced test set cannot
inflate) next to WA (plain accuracy). Everything is computed by scikit-learn against the full,
fixed class list, so a class that a fold never predicts still has its row and column, and results
from different folds, runs and models line up. The returned dicts hold plain Python numbers so
they go straight into JSON (the results store) and DataFrames (reports).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

HEADLINE = ("ua", "wa", "macro_f1")


def encode(y: Sequence, classes: Sequence[str]) -> np.ndarray:
    """Class names or integer indices -> integer indices into ``classes``.

    Integers must already lie in ``range(len(classes))``; names must all be in ``classes``. An
    unknown label is an error rather than being dropped, since dropping it would quietly change
    the score.
    """
    arr = np.asarray(y)
    k = len(classes)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() >= k):
            raise ValueError(f"label index outside 0..{k - 1}: {sorted(set(arr.tolist()) - set(range(k)))}")
        return arr.astype(np.int64)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in arr.tolist()} - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} not among classes {list(classes)}")
    return np.array([index[str(v)] for v in arr.tolist()], dtype=np.int64)


def ua(y_true: Sequence, y_pred: Sequence, classes: Sequence[str]) -> float:
    """Unweighted accuracy: the mean recall over the classes present in ``y_true``.

    Same as scikit-learn's ``balanced_accuracy_score``; classes absent from the truth are left out
    of the mean (their recall is undefined, not zero), so a fold without a class is not punished.
    """
    t, p = encode(y_true, classes), encode(y_pred, classes)
    rec = recall_score(t, p, labels=range(len(classes)), average=None, zero_division=np.nan)
    return float(np.nanmean(rec)) if not np.all(np.isnan(rec)) else math.nan


def scores(y_true: Sequence, y_pred: Sequence, classes: Sequence[str]) -> dict:
    """All the scores of one set of predictions.

    Returns ``{"n", "ua", "wa", "macro_f1", "recall": {class: r}, "f1": {class: f},
    "support": {class: n}, "confusion": [[counts]], "classes": [...]}``. Confusion rows are true
    classes, columns predicted, both in ``classes`` order. Per-class recall of a class with no
    test examples is ``None``; its F1 is 0 when it was predicted (false positives only) and
    ``None`` when it was neither present nor predicted. Macro-F1 averages over the classes present
    in truth or prediction, as UA averages over the classes present in truth.
    """
    classes = list(classes)
    t, p = encode(y_true, classes), encode(y_pred, classes)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    if t.size == 0:
        raise ValueError("no predictions to score")
    labels = list(range(len(classes)))
    cm = confusion_matrix(t, p, labels=labels)
    rec = recall_score(t, p, labels=labels, average=None, zero_division=np.nan)
    f1 = f1_score(t, p, labels=labels, average=None, zero_division=0.0)
    support = cm.sum(axis=1)
    used = support + cm.sum(axis=0) > 0
    f1 = np.where(used, f1, np.nan)
    return {
        "n": int(t.size),
        "ua": float(np.nanmean(rec)),
        "wa": float(accuracy_score(t, p)),
        "macro_f1": float(np.nanmean(f1)),
        "recall": {c: _num(r) for c, r in zip(classes, rec)},
        "f1": {c: _num(f) for c, f in zip(classes, f1)},
        "support": {c: int(s) for c, s in zip(classes, support)},
        "confusion": cm.astype(int).tolist(),
        "classes": classes,
    }


def normalised_confusion(confusion, axis: str = "true") -> np.ndarray:
    """Counts -> rates. ``axis="true"``: each row sums to 1 (the diagonal is per-class recall);
    ``"pred"``: each column sums to 1 (precision); ``"all"``: the whole matrix sums to 1.
    Rows/columns with no counts stay 0 rather than becoming NaN.
    """
    cm = np.asarray(confusion, dtype=float)
    if axis == "true":
        denom = cm.sum(axis=1, keepdims=True)
    elif axis == "pred":
        denom = cm.sum(axis=0, keepdims=True)
    elif axis == "all":
        denom = np.array(cm.sum())
    else:
        raise ValueError(f"axis must be 'true', 'pred' or 'all', not {axis!r}")
    return np.divide(cm, denom, out=np.zeros_like(cm), where=denom > 0)


def aggregate(per_fold: Sequence[dict], ddof: int = 1) -> dict:
    """Mean and standard deviation over folds of every scalar and per-class score.

    ``ddof=1`` (the sample standard deviation, as pandas reports it) by default; the std of a
    single fold is ``None`` rather than a made-up 0. Per-class scores missing in a fold (``None``)
    are left out of that class's mean. Confusion matrices are summed, so the pooled matrix counts
    every test clip once.

    Returns ``{"folds": n, "ua": {"mean", "std"}, "wa": ..., "macro_f1": ...,
    "recall": {class: {"mean", "std"}}, "f1": {...}, "confusion": [[summed counts]], "classes"}``.
    """
    if not per_fold:
        raise ValueError("no folds to aggregate")
    classes = per_fold[0]["classes"]
    if any(s["classes"] != classes for s in per_fold):
        raise ValueError("folds were scored against different class lists")
    out: dict = {"folds": len(per_fold), "classes": list(classes)}
    for key in HEADLINE:
        out[key] = _mean_std([s[key] for s in per_fold], ddof)
    for key in ("recall", "f1"):
        out[key] = {c: _mean_std([s[key][c] for s in per_fold], ddof) for c in classes}
    out["confusion"] = np.sum([np.asarray(s["confusion"]) for s in per_fold], axis=0).astype(int).tolist()
    return out


def _mean_std(values: Sequence[float | None], ddof: int) -> dict:
    vals = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if vals.size == 0:
        return {"mean": None, "std": None}
    std = float(np.std(vals, ddof=ddof)) if vals.size > ddof else None
    return {"mean": float(vals.mean()), "std": std}


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x
