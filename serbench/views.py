"""Views that set runs side by side, computed from the run table of :mod:`serbench.runtable`:
speaker leakage (random split vs speaker-independent), each compressed run against the fp32 run
of its invocation, UA per test speaker, and cross-corpus against in-corpus. Each is a DataFrame of
numbers with a fixed set of columns (the ``*_COLUMNS`` constants, also when it is empty), written
as a CSV by :mod:`serbench.report` and shown there through :mod:`serbench.fmt`.

Why a module of their own: the run table is what ``serbench gate`` and :func:`serbench.api.results`
need; these views are what only the report needs. Every pairing goes through
:func:`serbench.runtable.comparable`. The uncertainty they carry (see :mod:`serbench.stats`): a
compressed run's difference to fp32 is the paired bootstrap ``serbench run`` stored in
``summary["paired"]``, with a verdict (:func:`serbench.fmt.paired_verdict`): "equivalent" only when
its interval lies within the margin (±1 point by default), "inconclusive" when it covers 0 but
reaches beyond, and the minimum detectable difference that says how far the test set resolves;
the leakage gap gets a paired speaker-clustered interval computed here from both runs' stored
predictions. Runs stored before these existed are left out of these views; nothing fails on them.
"""
from __future__ import annotations

import pandas as pd

from serbench import stats
from serbench.fmt import EQUIVALENCE_MARGIN, audit_text, finite, paired_verdict, resolution
from serbench.runtable import comparable
from serbench.store import Store


def leakage_table(table: pd.DataFrame, db: Store | None = None) -> pd.DataFrame:
    """For each pair of :func:`comparable` runs on one corpus: random-split UA minus
    speaker-independent UA, with both runs' per-fold audits (speakers shared by train and test).
    With ``db``, each pair also gets the paired bootstrap interval of the gap from both runs'
    stored predictions (see :func:`leakage_interval`); without it those columns are empty."""
    rows = table.to_dict("records")
    within = [r for r in rows if r["corpus"] and not r["test_corpora"]]
    out = []
    for leaky in (r for r in within if r["unit"] == "utterance"):
        for si in (r for r in within if r["unit"] != "utterance"):
            if si["corpus"] != leaky["corpus"] or not comparable(leaky, si, leaky["corpus"]):
                continue
            si_shared = [f["shared"] for f in si["audit"]]
            out.append({
                "model": leaky["model"], "recipe": leaky["recipe"], "head": leaky["head"], "mode": leaky["mode"],
                "corpus": leaky["corpus"], "label_map": leaky["label_maps"][leaky["corpus"]],
                "random_protocol": leaky["protocol"], "speaker_independent_protocol": si["protocol"],
                "ua_random": leaky["ua"], "ua_speaker_independent": si["ua"],
                "leakage": None if None in (leaky["ua"], si["ua"]) else leaky["ua"] - si["ua"],
                "random_audit": audit_text(leaky["audit"]), "speaker_independent_audit": audit_text(si["audit"]),
                "check": "ok" if not any(si_shared) else "AUDIT: speaker-independent run shares speakers",
                "marks": leaky["marks"], "run_ids": f"{leaky['run_id']} vs {si['run_id']}",
                **(_leakage_ci(db, leaky, si) if db is not None else dict.fromkeys(LEAKAGE_CI_COLUMNS)),
            })
    return pd.DataFrame(out, columns=LEAKAGE_COLUMNS)


LEAKAGE_CI_COLUMNS = ["leakage_pooled", "leakage_ci_low", "leakage_ci_high", "leakage_ci_unit",
                      "leakage_ci_utterances", "leakage_ci_note"]
LEAKAGE_COLUMNS = ["model", "recipe", "head", "mode", "corpus", "label_map", "random_protocol",
                   "speaker_independent_protocol", "ua_random", "ua_speaker_independent", "leakage", "random_audit",
                   "speaker_independent_audit", "check", "marks", "run_ids", *LEAKAGE_CI_COLUMNS]
UTTERANCE_UNIT = "utterance (speakers not stored with the predictions: too narrow)"


def _leakage_ci(db: Store, leaky: dict, si: dict) -> dict:
    """Draws and seed: those of the speaker-independent run's own interval, else the defaults."""
    n_resamples = int(finite(si.get("ci_n_resamples")) or stats.N_RESAMPLES)
    seed = int(finite(si.get("ci_seed")) or 0)
    return leakage_interval(db.predictions(int(leaky["run_id"])), db.predictions(int(si["run_id"])),
                            leaky["classes"], n_resamples=n_resamples, seed=seed)


def leakage_interval(random_preds: pd.DataFrame, si_preds: pd.DataFrame, classes,
                     n_resamples: int = stats.N_RESAMPLES, seed: int = 0) -> dict:
    """Random-split UA minus speaker-independent UA, pooled over the utterances both runs predicted
    (aligned on ``utt_id``, same true label), with the interval of :func:`serbench.stats.paired_bootstrap`
    (both runs scored on the same draws). Draws resample speakers when the stored predictions name
    the speaker of every shared utterance (``speaker``, from either run); otherwise utterances, which
    ignores that a speaker's clips are correlated and so gives too narrow an interval -
    ``leakage_ci_unit`` says which. An utterance predicted in
    several folds of one run (repeated splits) counts once, with its first fold's prediction."""
    empty = dict.fromkeys(LEAKAGE_CI_COLUMNS)
    notes = []
    frames = []
    for name, preds in (("random split", random_preds), ("speaker-independent", si_preds)):
        preds = preds.sort_values(["fold", "utt_id"]) if "fold" in preds else preds
        repeated = int(preds["utt_id"].duplicated().sum())
        if repeated:
            notes.append(f"{name}: {repeated} repeated prediction(s) of an utterance left out (first fold's kept)")
        frames.append(preds.drop_duplicates("utt_id"))
    a, b = frames
    both = a.merge(b, on="utt_id", suffixes=("_r", "_s"))
    mismatch = int((both["y_true_r"] != both["y_true_s"]).sum())
    both = both[both["y_true_r"] == both["y_true_s"]]
    if mismatch:
        notes.append(f"{mismatch} utterance(s) with different true labels left out")
    if len(both) != len(a) or len(both) != len(b):
        notes.append(f"on the {len(both)} utterances both runs predicted (random split: {len(a)}, "
                     f"speaker-independent: {len(b)})")
    if both.empty:
        return {**empty, "leakage_ci_utterances": 0, "leakage_ci_note": "; ".join(notes) or "no predictions"}
    speakers = None
    named = [both[c].where(both[c].astype(str) != "") for c in ("speaker_s", "speaker_r") if c in both]
    if named:  # either run's stored speaker of the utterance (a run stored before speakers has none)
        spk = named[0].fillna(named[1]) if len(named) == 2 else named[0]
        speakers = spk.astype(str).to_numpy() if spk.notna().all() else None
    unit = "speaker" if speakers is not None else UTTERANCE_UNIT
    clusters = speakers if speakers is not None else both["utt_id"].astype(str).to_numpy()
    res = stats.paired_bootstrap(both["y_true_r"].tolist(), both["y_pred_s"].tolist(), both["y_pred_r"].tolist(),
                                 clusters, list(classes), n_resamples=n_resamples, seed=seed)
    return {"leakage_pooled": res["ua"]["delta"], "leakage_ci_low": finite(res["ua"]["low"]),
            "leakage_ci_high": finite(res["ua"]["high"]), "leakage_ci_unit": unit,
            "leakage_ci_utterances": int(len(both)), "leakage_ci_note": "; ".join(notes)}


# -- compressed vs fp32, per speaker ------------------------------------------------------------


PAIRED_COLUMNS = ["run_id", "model", "recipe", "reference_run", "reference_recipe", "protocol", "label_map", "head",
                  "mode", "delta_ua", "delta_ci_low", "delta_ci_high", "p_value", "mcnemar_p", "agreement",
                  "verdict", "mdd", "resolution", "delta_wa", "delta_wa_ci_low", "delta_wa_ci_high", "delta_macro_f1",
                  "delta_macro_f1_ci_low", "delta_macro_f1_ci_high", "clusters", "n_resamples", "confidence",
                  "marks"]


def paired_table(table: pd.DataFrame, margin: float = EQUIVALENCE_MARGIN) -> pd.DataFrame:
    """One row per run with a stored paired comparison to the reference (fp32) run of its
    invocation (``summary["paired"]``): the differences (new minus fp32) of UA, WA and macro-F1
    with their speaker-clustered intervals, the bootstrap p-value of ΔUA, McNemar's exact p,
    prediction agreement, the verdict, and ``recall_change_<class>`` columns."""
    out = []
    for r in table.to_dict("records"):
        p = r.get("paired")
        if not p:
            continue
        d = {k: p.get(k) if isinstance(p.get(k), dict) else {} for k in stats.SCORES}
        mc = p.get("mcnemar") if isinstance(p.get("mcnemar"), dict) else {}
        ref = p.get("reference_recipe") or "fp32"
        out.append({
            "run_id": r["run_id"], "model": r["model"], "recipe": r["recipe"], "reference_run": p.get("reference_run"),
            "reference_recipe": ref, "protocol": r["protocol"], "label_map": r["label_map"], "head": r["head"],
            "mode": r["mode"], "delta_ua": finite(d["ua"].get("delta")), "delta_ci_low": finite(d["ua"].get("low")),
            "delta_ci_high": finite(d["ua"].get("high")), "p_value": finite(d["ua"].get("p_value")),
            "mcnemar_p": finite(mc.get("p_value")), "agreement": finite(p.get("agreement")),
            "verdict": paired_verdict(p, margin), "mdd": finite(d["ua"].get("mdd")),
            "resolution": resolution(p, margin),
            **{f"delta_{k}{suffix}": finite(d[k].get(src)) for k in ("wa", "macro_f1")
               for suffix, src in (("", "delta"), ("_ci_low", "low"), ("_ci_high", "high"))},
            "clusters": p.get("clusters"), "n_resamples": p.get("n_resamples"), "confidence": p.get("confidence"),
            "marks": r["marks"],
            **{f"recall_change_{c}": finite(v) for c, v in (p.get("recall_change") or {}).items()},
        })
    return pd.DataFrame(out, columns=None if out else PAIRED_COLUMNS)


SPEAKER_COLUMNS = ["run_id", "model", "recipe", "protocol", "label_map", "head", "speaker", "n", "ua", "wa",
                   "macro_f1", "marks"]


def speakers_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, test speaker) from the runs' stored ``summary["per_speaker"]`` (pooled
    over folds), worst UA first within a run."""
    out = []
    for r in table.to_dict("records"):
        rows = sorted(r.get("per_speaker") or [], key=lambda s: (_sortable(s.get("ua")), str(s.get("speaker"))))
        for s in rows:
            out.append({"run_id": r["run_id"], "model": r["model"], "recipe": r["recipe"], "protocol": r["protocol"],
                        "label_map": r["label_map"], "head": r["head"], "speaker": s.get("speaker"),
                        "n": s.get("n"), "ua": finite(s.get("ua")), "wa": finite(s.get("wa")),
                        "macro_f1": finite(s.get("macro_f1")), "marks": r["marks"]})
    return pd.DataFrame(out, columns=SPEAKER_COLUMNS)


def _sortable(x) -> float:
    x = finite(x)
    return float("inf") if x is None else x


def cross_corpus_table(table: pd.DataFrame) -> pd.DataFrame:
    """Each cross-corpus run next to the :func:`comparable` speaker-independent in-corpus runs on
    its source or target corpora (same label map on that corpus, same classes, head, ...: in-corpus
    UA, cross-corpus UA, the gap), with per-class recall on the target corpus. A cross-corpus run
    without an in-corpus partner still gets its row."""
    rows = table.to_dict("records")
    within = [r for r in rows if r["corpus"] and not r["test_corpora"] and r["unit"] != "utterance"]
    out = []
    for cross in (r for r in rows if r["test_corpora"]):
        base = {"model": cross["model"], "recipe": cross["recipe"], "head": cross["head"], "mode": cross["mode"],
                "protocol": cross["protocol"], "label_map": cross["label_map"],
                "train": "+".join(cross["train_corpora"]), "target": "+".join(cross["test_corpora"]),
                "ua_cross": cross["ua"],
                **{f"recall_{c}": cross["recall"].get(c) for c in cross["classes"]},
                "marks": cross["marks"], "run_id": cross["run_id"]}
        partners = [r for r in within if r["corpus"] in cross["train_corpora"] + cross["test_corpora"]
                    and comparable(cross, r, r["corpus"])]
        for r in partners or [None]:
            extra = {"in_corpus_protocol": None, "in_corpus": None, "ua_in_corpus": None, "gap": None}
            if r is not None:
                role = "target" if r["corpus"] in cross["test_corpora"] else "source"
                extra = {"in_corpus_protocol": r["protocol"], "in_corpus": f"{r['corpus']} ({role})",
                         "ua_in_corpus": r["ua"],
                         "gap": None if None in (r["ua"], cross["ua"]) else r["ua"] - cross["ua"]}
            out.append({**base, **extra})
    return pd.DataFrame(out, columns=None if out else CROSS_COLUMNS)


# the cross-corpus table's columns (recall_<class> columns follow ua_cross when there are rows)
CROSS_COLUMNS = ["model", "recipe", "head", "mode", "protocol", "label_map", "train", "target", "ua_cross",
                 "marks", "run_id", "in_corpus_protocol", "in_corpus", "ua_in_corpus", "gap"]
