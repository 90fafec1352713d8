"""Is a difference real? Speaker-clustered bootstrap intervals, paired tests, per-speaker scores.

Utterances of one speaker are not independent: a speaker the model gets wrong is wrong on most of
their clips. Resampling utterances (as nkululeko's bootstrap does) therefore treats 60 clips of one
actor as 60 independent pieces of evidence and gives intervals that are too narrow. Here the unit
of resampling is the **speaker** (the cluster): each bootstrap draw picks speakers with
replacement and pools all their test predictions, so the interval reflects how much the score
depends on which speakers happened to be tested.

The resampling is vectorised: each speaker's predictions are reduced once to a confusion matrix,
and a draw is a weighted sum of those (weights = how often the draw picked each speaker), from
which UA, WA and macro-F1 are computed exactly as :func:`serbench.metrics.scores` does (UA over
the classes present in the truth; macro-F1 over the classes present in truth or prediction).

Paired comparisons (compressed vs fp32 on the same test utterances) use the same speaker draws for
both systems, so what varies is the difference itself. McNemar's exact test on per-utterance
correctness comes from statsmodels.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

from serbench import metrics

N_RESAMPLES = 1000
CONFIDENCE = 0.95
POWER = 0.8   # of the minimum detectable difference (paired_bootstrap's mdd)
SCORES = ("ua", "wa", "macro_f1")


def _confusions(y_true, y_pred, clusters, classes) -> tuple[np.ndarray, list]:
    """One confusion matrix per cluster: ``(n_clusters, K, K)``, and the cluster names (sorted)."""
    t, p = metrics.encode(y_true, classes), metrics.encode(y_pred, classes)
    names, idx = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)
    k = len(classes)
    cm = np.zeros((len(names), k, k), dtype=np.int64)
    np.add.at(cm, (idx, t, p), 1)
    return cm, list(names)


def from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """UA, WA and macro-F1 of confusion matrices ``(..., K, K)`` (rows true, columns predicted)."""
    cm = np.asarray(cm, dtype=float)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        denom = support + predicted
        f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
        total = cm.sum(axis=(-2, -1))
        return {"ua": _nanmean(recall), "wa": np.where(total > 0, tp.sum(axis=-1) / total, np.nan),
                "macro_f1": _nanmean(f1)}


def _nanmean(x: np.ndarray) -> np.ndarray:
    n = np.sum(~np.isnan(x), axis=-1)
    s = np.nansum(x, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / n, np.nan)


def _draws(n_clusters: int, n_resamples: int, seed: int) -> np.ndarray:
    """How many times each cluster is picked in each draw: ``(n_resamples, n_clusters)``."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_resamples)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    v = values[~np.isnan(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    a = (1.0 - confidence) / 2.0
    return float(np.quantile(v, a)), float(np.quantile(v, 1.0 - a))


def cluster_bootstrap(y_true: Sequence, y_pred: Sequence, clusters: Sequence, classes: Sequence[str],
                      n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE) -> dict:
    """Point estimate and percentile interval of UA, WA and macro-F1, resampling ``clusters``.

    Returns ``{"ua": {"value", "low", "high"}, "wa": ..., "macro_f1": ..., "clusters": n,
    "n_resamples", "confidence", "seed", "unit": "speaker"}``. Pass one cluster per utterance
    to get the (too narrow, for speech) utterance bootstrap.
    """
    cm, names = _confusions(y_true, y_pred, clusters, classes)
    point = from_confusion(cm.sum(axis=0))
    boot = from_confusion(np.einsum("bc,cij->bij", _draws(len(names), n_resamples, seed), cm))
    out: dict = {"clusters": len(names), "n_resamples": int(n_resamples), "confidence": confidence,
                 "seed": int(seed)}
    for key in SCORES:
        low, high = _interval(boot[key], confidence)
        out[key] = {"value": float(point[key]), "low": low, "high": high}
    return out


def paired_bootstrap(y_true: Sequence, pred_ref: Sequence, pred_new: Sequence, clusters: Sequence,
                     classes: Sequence[str], n_resamples: int = N_RESAMPLES, seed: int = 0,
                     confidence: float = CONFIDENCE) -> dict:
    """``new - ref`` for UA, WA and macro-F1 on the same utterances, with a clustered interval and
    a two-sided bootstrap p-value (twice the smaller tail share of the differences at or beyond 0).

    Both systems are scored on the same speaker draws, so the interval is for the difference.
    Each score also carries what the comparison can resolve:

    * ``sd``: the bootstrap standard deviation of the difference (over speaker draws);
    * ``mdd``: the *minimum detectable difference*, ``(z(1 - alpha/2) + z(POWER)) * sd``: the true
      difference this comparison would detect at the interval's level with :data:`POWER`
      probability; never less than ``step`` (two systems that agree on every utterance vary by
      nothing, yet a test set cannot resolve less than one utterance);
    * ``step`` (UA and WA): the smallest change one utterance can make, ``1 / (K * largest class)``
      for UA and ``1 / N`` for WA; a bound within half a step of 0 touches 0 (:func:`serbench.fmt.verdict`).
    """
    cm_ref, names = _confusions(y_true, pred_ref, clusters, classes)
    cm_new, _ = _confusions(y_true, pred_new, clusters, classes)
    support = cm_ref.sum(axis=(0, 2))
    present = support[support > 0]
    steps = {"ua": 1.0 / (len(present) * present.max()) if present.size else None,
             "wa": 1.0 / support.sum() if support.sum() else None}
    w = _draws(len(names), n_resamples, seed)
    ref, new = (from_confusion(np.einsum("bc,cij->bij", w, cm)) for cm in (cm_ref, cm_new))
    point_ref, point_new = from_confusion(cm_ref.sum(axis=0)), from_confusion(cm_new.sum(axis=0))
    out: dict = {"clusters": len(names), "n_resamples": int(n_resamples), "confidence": confidence,
                 "seed": int(seed)}
    for key in SCORES:
        d = (new[key] - ref[key])
        d = d[~np.isnan(d)]
        low, high = _interval(d, confidence)
        p = min(1.0, 2.0 * min(np.mean(d <= 0), np.mean(d >= 0))) if d.size else float("nan")
        sd = float(np.std(d, ddof=1)) if d.size > 1 else float("nan")
        step = steps.get(key)
        mdd = float((norm.ppf(1 - (1 - confidence) / 2) + norm.ppf(POWER)) * sd)
        out[key] = {"delta": float(point_new[key] - point_ref[key]), "low": low, "high": high,
                    "p_value": float(p), "covers_zero": bool(low <= 0 <= high), "sd": sd,
                    "mdd": mdd if step is None else max(mdd, float(step)),
                    "step": None if step is None else float(step)}
    out["utterances"] = int(len(y_true))
    return out


def mcnemar(y_true: Sequence, pred_ref: Sequence, pred_new: Sequence) -> dict:
    """McNemar's exact test on per-utterance correctness (statsmodels): does one system get right
    utterances the other gets wrong more often than chance would?"""
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    t = np.asarray(y_true, dtype=str)
    a, b = np.asarray(pred_ref, dtype=str) == t, np.asarray(pred_new, dtype=str) == t
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    res = sm_mcnemar(table, exact=True)
    return {"p_value": float(res.pvalue), "ref_only_correct": table[0][1], "new_only_correct": table[1][0],
            "table": table}


def agreement(pred_ref: Sequence, pred_new: Sequence) -> float:
    """Share of utterances where both systems predict the same class."""
    a, b = np.asarray(pred_ref, dtype=str), np.asarray(pred_new, dtype=str)
    return float(np.mean(a == b)) if a.size else float("nan")


def per_cluster(y_true: Sequence, y_pred: Sequence, clusters: Sequence, classes: Sequence[str]) -> pd.DataFrame:
    """One row per cluster (speaker): ``speaker, n, ua, wa, macro_f1``, worst UA first."""
    cm, names = _confusions(y_true, y_pred, clusters, classes)
    s = from_confusion(cm)
    frame = pd.DataFrame({"speaker": names, "n": cm.sum(axis=(1, 2)), "ua": s["ua"], "wa": s["wa"],
                          "macro_f1": s["macro_f1"]})
    return frame.sort_values(["ua", "speaker"]).reset_index(drop=True)
