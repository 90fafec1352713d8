"""Scoring a tune candidate by what it does to emotion recognition: validation UA under a protocol,
as ``serbench run`` would score it, and never on a test utterance (``serbench tune --metric ua``).

Centred cosine says how far a quantised encoder's embeddings moved; a researcher choosing a
recipe wants to know what that costs in UA. So a candidate is built and scored exactly as ``run``
builds and scores a recipe, with one difference: the utterances scored are each fold's
*validation* split, not its test split. Per fold of the protocol:

* the head is ``run``'s: trained on the reference (fp32) embeddings of the training split and
  chosen on the validation split (:meth:`serbench.runner.Runner.fit_probe`), once;
* the candidate's artefact is ``run``'s: calibrated on up to ``calibration`` of *that fold's
  training* utterances (seeded as ``run`` seeds them), so ``serbench run`` with the tuned recipe
  and the same protocol, data and seed finds every fold's artefact cached;
* its embeddings of the validation utterances are scored by that head.

The folds' validation predictions are pooled, and the candidate is compared with the reference
utterance by utterance (:func:`serbench.stats.paired_bootstrap`, clustered by speaker): its ΔUA
with a 95 % interval, McNemar's p and the centred cosine of its validation embeddings. The search
(:func:`serbench.mixed_precision.tune`) reads ``ua_delta``, ΔUA as a fraction.

A bias, stated: the heads stopped early on the reference's validation UA, so the reference's
validation UA is a little optimistic and every candidate's ΔUA a little pessimistic. The tuner
errs towards keeping more in float, never towards promising a drop smaller than ``run`` will find.
The test splits are still the honest measure: run the tuned recipe with ``serbench run``.
"""
from __future__ import annotations

import numpy as np

from serbench import measure, metrics, stats, train
from serbench.entries import RecipeEntry


class ValidationTrials:
    """Builds recipes per fold of a protocol and scores them on validation, against the reference."""

    metric = "ua"

    def __init__(self, entry, weights, threads, *, protocol, data=None, synthetic=False,
                 synthetic_size="small", seed=None, calibration=32, n_resamples=stats.N_RESAMPLES, log=print):
        from serbench.runner import Runner, RunSpec

        self.entry, self.threads = entry, threads
        spec = RunSpec(model=entry.name, protocol=protocol, weights=weights, data=dict(data or {}),
                       synthetic=synthetic, synthetic_size=synthetic_size, seed=seed,
                       calibration_clips=calibration, measure=False, n_resamples=n_resamples)
        self.runner = r = Runner(spec, progress=False, log=log)
        r._prepare()
        self.net, self.reference, self.classes, self.seed = (r.model, r.weights), r.fp32, r.classes, r.seed
        self.n_resamples = n_resamples
        self.heads, keys = [], []
        for fold in r.folds:
            head, _, _ = r.fit_probe(fold)
            self.heads.append(head)
            keys += list(fold.val)
        self.y_true = r._labels(keys)
        self.speakers = r._speakers(keys)
        ref = self._predict(self.reference)
        self.ref_art, self.ref_pred, self.ref_emb = ref["artefact"], ref["pred"], ref["emb"]
        self.ref_ua = _ua(self.y_true, self.ref_pred, self.classes)
        self.done: dict[tuple, dict] = {}
        names = ", ".join(f"{n}={src.path}" for n, src in r.sources.items())
        synth = " (SYNTHETIC)" if all(src.synthetic for src in r.sources.values()) else ""
        self.source = {
            "kind": "validation", "protocol": r.protocol.name, "data": names + synth, "seed": self.seed,
            "folds": len(r.folds), "utterances": len(keys), "distinct_utterances": len(set(keys)),
            "speakers": len(set(self.speakers)),
            "head": r.head.name, "reference_ua": self.ref_ua,
            "description": (f"validation UA under protocol {r.protocol.name} on {names}{synth}: "
                            f"{len(keys)} validation predictions{_distinct(keys)} of {len(set(self.speakers))} "
                            f"speakers over {len(r.folds)} folds (seed {self.seed}), {r.head.name} heads trained on "
                            f"{self.reference.name} training embeddings and chosen on validation; "
                            f"{self.reference.name} scores UA {100 * self.ref_ua:.1f} there; every fold's "
                            "artefact calibrated on that fold's training utterances; no test utterance read")}
        self.notes = list(r.notes)   # what `run` would say of these corpora: reader warnings, skips, drops

    def _predict(self, recipe: RecipeEntry) -> dict:
        """Every fold's validation predictions and embeddings by ``recipe``'s artefact of that fold;
        fold 0's artefact stands for the recipe (its size, its latency), as in ``run``."""
        r, preds, embs, arts = self.runner, [], [], []
        for fold, head in zip(r.folds, self.heads):
            key, enc, art = r._encoder(recipe, fold, self.net)
            X = r._embed(fold.val, enc, key, f"fold {fold.index} {recipe.name} val")
            preds += [self.classes[i] for i in train.predict(head, X)[0]]
            embs.append(X)
            arts.append(art)
        return {"pred": preds, "emb": np.concatenate(embs), "size_mb": arts[0].size_mb, "artefact": arts[0]}

    def __call__(self, recipe: RecipeEntry) -> dict:
        key = (recipe.name, repr(recipe.options))
        if key not in self.done:
            got = self._predict(recipe)
            paired = stats.paired_bootstrap(self.y_true, self.ref_pred, got["pred"], self.speakers, self.classes,
                                            self.n_resamples, seed=self.seed)["ua"]
            fid = measure.fidelity(self.ref_emb, got["emb"])
            self.done[key] = {
                "artefact": got["artefact"], "size_mb": got["size_mb"], "ua_delta": paired["delta"],
                "fidelity": fid["centered_cosine"], "detail": fid,
                "ua": _ua(self.y_true, got["pred"], self.classes),
                "delta_ua": {k: paired[k] for k in ("delta", "low", "high", "p_value")},
                "mcnemar_p": stats.mcnemar(self.y_true, self.ref_pred, got["pred"])["p_value"],
                "agreement": stats.agreement(self.ref_pred, got["pred"])}
        return self.done[key]


def _distinct(keys) -> str:
    """`` (300 distinct utterances)`` when a speaker validates more than one fold, else nothing."""
    n = len(set(keys))
    return "" if n == len(keys) else f" ({n} distinct utterances: a speaker may validate several folds)"


def _ua(y_true, y_pred, classes) -> float:
    return float(metrics.ua(y_true, y_pred, classes))
