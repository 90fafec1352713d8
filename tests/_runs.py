"""Hand-made results stores for the tests of results, views, report, gate and faults: runs with
known predictions (so known UA), audits, measurements and, where asked, the speaker statistics a
finished ``serbench run`` stores, written with :class:`serbench.store.Store`. Every expected number
in those tests is worked out from these inputs, not copied from the output."""
from __future__ import annotations

from types import SimpleNamespace


from serbench import metrics, stats
from serbench.store import Store

CLASSES = ["angry", "happy", "neutral", "sad"]
CLASSES_8 = ["angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]  # ravdess-8class
PROTOCOLS = {
    "loso": {"corpus": "iemocap", "unit": "session", "kind": "leave-one-out"},
    "kfold-random": {"corpus": "iemocap", "unit": "utterance", "kind": "kfold"},
    "speaker-kfold": {"corpus": "ravdess", "unit": "speaker", "kind": "kfold"},
    "ravdess-random": {"corpus": "ravdess", "unit": "utterance", "kind": "kfold"},
    "cross-corpus-ravdess": {"corpus": None, "unit": "corpus", "kind": "cross-corpus",
                             "train": ["iemocap", "crema-d"], "test": ["ravdess"]},
}
WEIGHTS = {"hub": ({"kind": "hub", "id": "org/big", "revision": "abc"}, "hub org/big@abc"),
           "random": ({"kind": "random", "seed": 0}, "RANDOM-INIT (seed 0), not pretrained"),
           "none": ({"kind": "none", "extractor": "opensmile"}, "weight-free (opensmile)")}


def predictions(recalls, n: int = 10, classes=CLASSES) -> tuple[list[str], list[str]]:
    """Truth and predictions with exactly ``recalls[c] * n`` of class c right (the rest predicted
    as the next class): UA = mean(recalls)."""
    y_true, y_pred = [], []
    for i, (c, r) in enumerate(zip(classes, recalls)):
        right = round(r * n)
        y_true += [c] * n
        y_pred += [c] * right + [classes[(i + 1) % len(classes)]] * (n - right)
    return y_true, y_pred


def write_run(db: Store, model: str, recipe: str, protocol: str, recalls, *, weights: str = "hub",
              synthetic: bool = False, folds: int = 2, shared: int = 0, measurements: dict | None = None,
              status: str = "finished", mode: str = "probe", classes=CLASSES, label_maps: dict | None = None,
              head: str | None = None, speakers: int | None = None, reference: int | None = None,
              n_resamples: int = 200) -> int:
    """One run with ``folds`` identical folds scored from :func:`predictions` (so UA = mean(recalls)
    and the std is 0), an audit with ``shared`` train/test speakers per fold, and measurements.
    ``label_maps``: corpus -> label map name as the runner stores it (a corpus left out: None, its
    default); ``head``: the probe head's name (None: no "head" key, as in runs stored before heads).
    ``speakers``: store each prediction's speaker (utterance ``u{i}`` spoken by :func:`speaker_of`)
    and the speaker statistics a finished ``serbench run`` stores (``ci``, ``per_speaker``),
    computed with serbench.stats from the pooled predictions; ``reference``: also the ``paired``
    comparison to that run (whose predictions are read back from the store). Without them the
    predictions and summary are an older run's."""
    proto = {"name": protocol, "train": [], "test": [], "train_only": [], **PROTOCOLS[protocol]}
    corpora = proto["train"] + proto["test"] or [proto["corpus"]]
    source, described = WEIGHTS[weights]
    config = {"synthetic": synthetic, "weights_source": source, "weights": described, "protocol": proto,
              "classes": list(classes), "data": {c: {"synthetic": synthetic, "label_map": (label_maps or {}).get(c)}
                                                 for c in corpora},
              "nonce": [model, recipe, protocol, status, len(db.runs())]}
    if head is not None:
        config["head"] = {"name": head, "kind": head}
    rid = db.create_run(model=model, recipe=recipe, protocol=protocol, mode=mode, config=config, provenance={})
    y_true, y_pred = predictions(recalls, classes=classes)
    per_fold = []
    for k in range(folds):
        scores = metrics.scores(y_true, y_pred, list(classes))
        audit = {"sizes": {"test": len(y_true)}, "speakers": {"test": 2 + shared},
                 "shared_speakers": {"train-test": {"count": shared, "speakers": [f"s{i}" for i in range(shared)]}}}
        utts = [f"u{i}" for i in range(len(y_true))]
        db.write_fold(rid, k, metrics=scores, audit=audit, utt_ids=utts, y_true=y_true, y_pred=y_pred,
                      **({"speakers": [speaker_of(u, speakers) for u in utts]} if speakers else {}))
        per_fold.append(scores)
    if measurements is not None:
        db.add_measurements(rid, measurements)
    if status == "finished":
        summary = metrics.aggregate(per_fold)
        summary["audit"] = {"shared_speakers_train_test": [shared] * folds}
        if speakers:
            summary.update(speaker_statistics(db, rid, speakers, classes, reference, n_resamples))
        db.finish_run(rid, summary, n_folds=folds)
    elif status == "failed":
        db.fail_run(rid, "boom")
    return rid


def speaker_of(utt_id: str, speakers: int, corpus: str = "iemocap") -> str:
    """The (qualified) speaker of the fixture's utterance ``u{i}``: ``iemocap/S{i % speakers}``."""
    return f"{corpus}/S{int(utt_id.split('/')[-1][1:]) % speakers}"


def speaker_statistics(db: Store, rid: int, speakers: int, classes, reference: int | None,
                       n_resamples: int = 200) -> dict:
    """What ``serbench run`` stores in a summary (its ``_statistics`` and ``_paired``), from the
    run's stored predictions (all folds pooled) with serbench.stats."""
    pred = db.predictions(rid)
    spk = pred["speaker"].tolist()
    y, p = pred["y_true"].tolist(), pred["y_pred"].tolist()
    out = {"ci": stats.cluster_bootstrap(y, p, spk, list(classes), n_resamples, seed=0),
           "per_speaker": stats.per_cluster(y, p, spk, list(classes)).to_dict("records")}
    if reference is not None:
        ref = db.predictions(reference)
        both = ref.merge(pred, on=["fold", "utt_id"], suffixes=("_ref", "_new"), validate="one_to_one")
        y, a, b = both["y_true_ref"].tolist(), both["y_pred_ref"].tolist(), both["y_pred_new"].tolist()
        spk = both["speaker_ref"].tolist()
        ra, rb = (metrics.scores(y, x, list(classes))["recall"] for x in (a, b))
        out["paired"] = {"reference_run": reference, "reference_recipe": "fp32",
                         **stats.paired_bootstrap(y, a, b, spk, list(classes), n_resamples, seed=0),
                         "mcnemar": stats.mcnemar(y, a, b), "agreement": stats.agreement(a, b),
                         "recall_change": {c: rb[c] - ra[c] for c in classes}}
    return out


def hand_store(tmp_path) -> SimpleNamespace:
    """A hand-made store: a real-data hub model under three recipes, a weight-free baseline, a
    random-split run, a cross-corpus run, a synthetic random-init run, plus an older and a failed
    run that the default selection must skip. The three recipes of the hub model (A, B, C) carry
    speaker intervals and per-speaker UA (4 speakers), B and C a paired test against A, as one
    ``serbench run --recipe fp32,dynamic-int8,static-int8`` stores them; the others are stored as
    older runs were, without any of these."""
    path = tmp_path / "results.sqlite"

    def m(size, lat=None, **kw):
        return {"size_mb": size, "artefact": "x", **({"latency_p50_ms": lat} if lat else {}), **kw}

    with Store(path) as db:
        ids = {}
        ids["old"] = write_run(db, "big", "fp32", "loso", [0.3] * 4, measurements=m(100, 50))
        ids["A"] = write_run(db, "big", "fp32", "loso", [0.6] * 4, measurements=m(100, 50, energy_j_per_clip=2.0,
                                                                                     centered_cosine=1.0), speakers=4)
        ids["B"] = write_run(db, "big", "dynamic-int8", "loso", [0.6, 0.6, 0.5, 0.6], measurements=m(25, 30),
                             speakers=4, reference=ids["A"])
        ids["C"] = write_run(db, "big", "static-int8", "loso", [0.5] * 4, measurements=m(26, 35), speakers=4,
                             reference=ids["A"])
        ids["D"] = write_run(db, "egemaps", "fp32", "loso", [0.4, 0.5, 0.4, 0.5], weights="none", measurements=m(0))
        ids["E"] = write_run(db, "big", "fp32", "kfold-random", [0.7] * 4, shared=8, measurements=m(100))
        ids["F"] = write_run(db, "big", "fp32", "cross-corpus-ravdess", [0.2, 0.4, 0.5, 0.5], folds=1,
                             measurements=m(100))
        ids["G"] = write_run(db, "tiny", "fp32", "loso", [0.3] * 4, weights="random", synthetic=True,
                             measurements=m(0.1))
        ids["H"] = write_run(db, "tiny", "fp32", "kfold-random", [0.4] * 4, weights="random", synthetic=True,
                             shared=8, measurements=m(0.1))
        ids["failed"] = write_run(db, "big", "fp32", "loso", [0.9] * 4, status="failed")
    return SimpleNamespace(path=path, ids=ids)

