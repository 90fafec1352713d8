"""``serbench compare``: the results store -> one report (tables, Pareto fronts, plots, HTML/MD/CSV).

The report is built in two steps so each can be tested on its own: :func:`build` reads the store
into plain tables (one row per run, then the leakage and cross-corpus views derived from it) and
figures; :func:`write` renders them to files. Choices, and why:

* Fronts are computed **per protocol and kind of data** (see :func:`add_fronts`): a UA measured
  leave-one-session-out cannot be traded against one measured on random folds, nor synthetic
  against real, so putting them on one front would be meaningless.
* Accuracy per MB is UA (a fraction) / size in MB. A weight-free model (eGeMAPS, 0 MB) has no such
  ratio: it is reported as not applicable, never as infinity, and it still takes part in the
  size front with its 0 MB (see :mod:`serbench.pareto`).
* Every table row and plot label of a run on synthetic data or random-init weights carries the
  marks ``SYNTHETIC`` / ``RANDOM-INIT``, so no number can be quoted without them.
* The leakage and cross-corpus views set two runs side by side only when :func:`comparable` says
  so (same corpus, label map and classes, model, recipe, head, mode, weights and kind of data): a
  4-class UA minus an 8-class UA, or an MLP probe against a logistic-regression one, measures
  nothing. For the same reason the default selection keeps the latest run per label map and head.
* Uncertainty (see :mod:`serbench.stats`): a run's UA/WA/macro-F1 is shown twice, as the mean ±
  std over folds and as the pooled score with its 95 % interval from a bootstrap over *speakers*
  (stored by ``serbench run`` in ``summary["ci"]``); a compressed run's difference to the fp32
  run of the same invocation (``summary["paired"]``) gets its own table with a verdict that says
  "indistinguishable" when the interval covers 0; the leakage gap gets a paired speaker-clustered
  interval computed here from both runs' stored predictions. Runs stored before these existed
  show "—" and are left out of the new views; nothing fails on them.
* Files are written to a temporary name and renamed, so an interrupted report never leaves a
  half-written file under the final name.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from serbench import __version__, atomic, pareto, stats
from serbench.errors import SerbenchError
from serbench.store import Store

SELECT_KEY = ("model", "recipe", "protocol", "mode", "synthetic", "label_map", "head")
SCORES = stats.SCORES  # ua, wa, macro_f1
DEFAULT_HEAD = "mlp"  # runs stored before the head choice have no "head" in their config: the MLP probe
FRONTS = {"front_size": {"size_mb": "min", "ua": "max"},
          "front_latency": {"latency_p50_ms": "min", "ua": "max"},
          "front_3d": {"size_mb": "min", "latency_p50_ms": "min", "ua": "max"}}
# measurement keys, newest name first (older stores used the names after it)
MEASURES = {"fidelity_cosine": ("fidelity_cosine", "centered_cosine"),
            "fidelity_rel_l2": ("fidelity_rel_l2", "rel_l2"),
            "peak_rss_mb": ("peak_rss_mb", "memory_peak_rss_mb"),
            "throughput_x_realtime": ("throughput_x_realtime", "throughput_audio_s_per_s"),
            "params": ("params",), "latency_p50_ms": ("latency_p50_ms",), "latency_p90_ms": ("latency_p90_ms",),
            "energy_j_per_clip": ("energy_j_per_clip",), "size_mb": ("size_mb",)}
MARK_NOTE = ("Runs marked SYNTHETIC used the built-in synthetic corpora and runs marked RANDOM-INIT used "
             "randomly initialised (not pretrained) weights: their numbers show that the pipeline works, "
             "not how a model does on real speech.")


# -- reading the store ---------------------------------------------------------------------------


def open_store(path: str | Path) -> Store:
    """The store at ``path``, opened read-only (so a store on a read-only mount can be reported on,
    and reading never creates or changes one); an error naming it if there is none."""
    return Store.existing(path)


def select_runs(runs: pd.DataFrame, run_ids: list[int] | None = None, key=SELECT_KEY) -> pd.DataFrame:
    """The runs a report covers: ``run_ids`` (each must exist and be finished), else the latest
    finished run per ``key`` (by default model, recipe, protocol, mode, synthetic-or-real, label
    map(s) and head, so an 8-class run does not hide a 4-class one of the same protocol). ``key``
    may name the columns of :meth:`Store.runs` and the derived ``label_map`` and ``head``."""
    if run_ids:
        known = dict(zip(runs["id"].tolist(), runs["status"].tolist()))
        missing = [i for i in run_ids if i not in known]
        if missing:
            raise SerbenchError(f"no run(s) {missing} in the store (it holds ids {min(known, default=0)}.."
                                f"{max(known, default=0)})")
        unfinished = [i for i in run_ids if known[i] != "finished"]
        if unfinished:
            raise SerbenchError(f"run(s) {unfinished} are not finished (status: "
                                f"{', '.join(known[i] for i in unfinished)}); `serbench run --resume` finishes them")
        return runs[runs["id"].isin(run_ids)].reset_index(drop=True)
    done = runs[runs["status"] == "finished"]
    if done.empty:
        raise SerbenchError(f"no finished runs in the store ({len(runs)} run(s), none finished)")
    configs = [c or {} for c in done["config"]]
    done = done.assign(label_map=[label_map_text(label_maps(c)) for c in configs],
                       head=[head_name(c) for c in configs])
    return done.sort_values("id").groupby(list(key), sort=False).tail(1).sort_values("id").reset_index(drop=True)


def run_table(db: Store, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run, raw numbers (fractions, MB, ms): what the CSV holds and the views use."""
    rows = [_run_row(db, run) for run in runs.to_dict("records")]
    return pd.DataFrame(rows)


def _run_row(db: Store, run: dict) -> dict:
    cfg, summary = run["config"], run["summary"] or {}
    proto = cfg.get("protocol") or {"name": run["protocol"]}
    meas = {}
    m = db.measurements(int(run["id"]))
    stored = dict(zip(m["key"].tolist(), m["value"].tolist()))
    for name, keys in MEASURES.items():
        meas[name] = next((stored[k] for k in keys if stored.get(k) is not None), None)
    if meas["params"] is None:  # the backbone's parameter count: its registry entry's `params`, which
        meas["params"] = (cfg.get("model_entry") or {}).get("params")  # the build checks to 0.1 %
    data_kind, synthetic_corpora = _data_kind(cfg)
    weights_kind = _weights_kind(cfg.get("weights_source") or {})
    marks = (["SYNTHETIC"] if data_kind != "real" else []) + (["RANDOM-INIT"] if weights_kind == "random" else [])
    label = f"{run['model']}/{run['recipe']}" + (" (ft)" if run["mode"] == "finetune" else "")
    maps = label_maps(cfg)
    ua, size = _mean(summary, "ua"), meas["size_mb"]
    folds = db.folds(int(run["id"]))
    row = {
        "run_id": int(run["id"]), "model": run["model"], "recipe": run["recipe"], "protocol": run["protocol"],
        "mode": run["mode"], "head": head_name(cfg), "label_map": label_map_text(maps), "label_maps": maps,
        "created": run["created"], "label": label, "marks": ", ".join(marks),
        "data": data_kind, "synthetic_corpora": ",".join(synthetic_corpora),
        "weights": cfg.get("weights") or str(cfg.get("weights_source")), "weights_kind": weights_kind,
        "corpus": proto.get("corpus"), "unit": proto.get("unit"), "kind": proto.get("kind"),
        "train_corpora": list(proto.get("train") or []), "test_corpora": list(proto.get("test") or []),
        "train_only": list(proto.get("train_only") or []), "folds": summary.get("folds"),
        "ua": ua, "ua_std": _std(summary, "ua"), "wa": _mean(summary, "wa"), "wa_std": _std(summary, "wa"),
        "macro_f1": _mean(summary, "macro_f1"), "macro_f1_std": _std(summary, "macro_f1"),
        **_ci_columns(summary),
        "classes": list(cfg.get("classes") or summary.get("classes") or []),
        **meas,
        "acc_per_mb": acc_per_mb(ua, size),
        "flags": "; ".join(stored.get("flags") or []),
        "confusion": summary.get("confusion"),
        "recall": {c: v.get("mean") for c, v in (summary.get("recall") or {}).items()},
        "f1": {c: v.get("mean") for c, v in (summary.get("f1") or {}).items()},
        "audit": [_fold_audit(a) for a in folds["audit"].tolist()],
        "per_speaker": [s for s in (summary.get("per_speaker") or []) if isinstance(s, dict)],
        "paired": summary.get("paired") if isinstance(summary.get("paired"), dict) else None,
    }
    return row


def _ci_columns(summary: dict) -> dict:
    """``ua_pooled``, ``ua_ci_low``, ``ua_ci_high`` (and the same for wa, macro_f1) from the run's
    stored speaker-bootstrap (``summary["ci"]``), plus how many speakers and draws it used;
    ``None`` for runs stored before intervals existed."""
    ci = summary.get("ci") if isinstance(summary.get("ci"), dict) else {}
    out = {}
    for key in SCORES:
        s = ci.get(key) if isinstance(ci.get(key), dict) else {}
        out.update({f"{key}_pooled": _float(s.get("value")), f"{key}_ci_low": _float(s.get("low")),
                    f"{key}_ci_high": _float(s.get("high"))})
    out.update({"ci_clusters": ci.get("clusters"), "ci_n_resamples": ci.get("n_resamples"),
                "ci_confidence": ci.get("confidence"), "ci_seed": ci.get("seed")})
    return out


def _float(x) -> float | None:
    """A finite float, else None (missing, NaN, not a number)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def acc_per_mb(ua: float | None, size_mb: float | None) -> float | None:
    """UA per MB of model; ``None`` (not applicable) for a weight-free model of 0 MB or unknown size."""
    if ua is None or size_mb is None or not size_mb > 0:
        return None
    return float(ua) / float(size_mb)


def head_name(cfg: dict) -> str:
    """The probe head a run used: ``config["head"]["name"]``; ``"mlp"`` for runs stored before
    the head choice existed (they all used the MLP probe)."""
    head = cfg.get("head")
    if isinstance(head, dict):
        head = head.get("name")
    return str(head) if head else DEFAULT_HEAD


def label_maps(cfg: dict) -> dict[str, str | None]:
    """Corpus -> name of the label map the run used on it, sorted by corpus. A corpus
    stored without a name (None) used its recipe's default, which is filled in, so an explicit
    ``ravdess-4class`` and an unnamed RAVDESS default compare equal. A config without ``data``
    (older stores) falls back to the protocol's corpora, each with its default."""
    data = cfg.get("data") or {}
    if not data:
        proto = cfg.get("protocol") or {}
        names = [proto.get("corpus")] + list(proto.get("train") or []) + list(proto.get("test") or [])
        data = {n: {} for n in dict.fromkeys(names) if n}
    return {corpus: (data[corpus] or {}).get("label_map") or _default_label_map(corpus) for corpus in sorted(data)}


def _default_label_map(corpus: str) -> str | None:
    from serbench.corpora import RECIPES  # lazy: the recipes pull in audio I/O the report does not need

    return getattr(RECIPES.get(corpus), "DEFAULT_LABEL_MAP", None)


def label_map_text(maps: dict[str, str | None]) -> str:
    """Label maps for humans: ``ravdess-8class``, or ``crema-d-4class + iemocap-4class`` over
    several corpora; a name that does not start with its corpus's is written ``corpus:name``."""
    return " + ".join(m if m and m.startswith(c) else f"{c}:{m or 'default'}" for c, m in maps.items())


def _data_kind(cfg: dict) -> tuple[str, list[str]]:
    """'SYNTHETIC', 'real', or 'PARTLY SYNTHETIC' (some corpora synthetic), and which ones."""
    data = cfg.get("data") or {}
    synth = sorted(n for n, d in data.items() if d.get("synthetic"))
    if cfg.get("synthetic") or (synth and len(synth) == len(data)):
        return "SYNTHETIC", synth
    return ("PARTLY SYNTHETIC", synth) if synth else ("real", [])


def _weights_kind(source: dict) -> str:
    """The kind of the weights a run started from (a fine-tune of random weights is random)."""
    if source.get("kind") == "finetuned":
        return _weights_kind(source.get("base") or {})
    return source.get("kind") or "unknown"


def _fold_audit(audit: dict) -> dict:
    shared = (audit.get("shared_speakers") or {}).get("train-test") or {}
    return {"shared": shared.get("count"), "test_speakers": (audit.get("speakers") or {}).get("test"),
            "test": (audit.get("sizes") or {}).get("test")}


def _mean(summary: dict, key: str):
    return (summary.get(key) or {}).get("mean")


def _std(summary: dict, key: str):
    return (summary.get(key) or {}).get("std")


# -- derived views -------------------------------------------------------------------------------


def add_fronts(table: pd.DataFrame) -> pd.DataFrame:
    """``front_size``, ``front_latency``, ``front_3d``: True/False on that front of the run's group
    (same protocol, same label maps, same kind of data: a 4-class UA cannot be traded against an
    8-class one), ``None`` where the run lacks a needed number."""
    out = table.copy()
    out["pareto_group"] = [f"{p} · {m} · {d}" for p, m, d in zip(out["protocol"], out["label_map"], out["data"])]
    for col in FRONTS:
        out[col] = pd.Series([None] * len(out), dtype=object)
    for _, idx in out.groupby("pareto_group", sort=False).groups.items():
        points = out.loc[idx].to_dict("records")
        for col, objectives in FRONTS.items():
            mask = pareto.front(points, objectives)
            for i, p, on in zip(idx, points, mask):
                out.at[i, col] = on if pareto.comparable(p, objectives) else None
    return out


# What makes two runs' numbers on one corpus comparable (set side by side, subtracted, later tested
# as a pair): the corpus itself; the label map the runs used on it (by name) and the classes they
# scored (the same ones, in the same order); model, recipe, probe head, mode (probe or fine-tune);
# the kind of weights (hub/local/random/none; a fine-tune is its base's kind) and the weights
# themselves (id and revision, path and hash, seed); and the kind of data (real, SYNTHETIC,
# PARTLY SYNTHETIC). Protocol is deliberately not in it: the views compare protocols.
COMPARABLE_KEY = ("corpus", "label_map", "classes", "model", "recipe", "head", "mode", "weights_kind",
                  "weights", "data")


def comparable_key(row: dict, corpus: str, fields: tuple[str, ...] = COMPARABLE_KEY) -> tuple | None:
    """The values of ``fields`` (by default :data:`COMPARABLE_KEY`) for the run-table row ``row``
    on ``corpus``, with ``label_map`` that of ``corpus``; ``None`` if the run did not use ``corpus``.
    A caller comparing e.g. recipes passes ``fields`` without ``"recipe"``."""
    maps = row["label_maps"]
    if corpus not in maps:
        return None
    facts = {"corpus": corpus, "label_map": maps[corpus], "classes": tuple(row["classes"])}
    return tuple(facts[k] if k in facts else row[k] for k in fields)


def comparable(a: dict, b: dict, corpus: str, fields: tuple[str, ...] = COMPARABLE_KEY) -> bool:
    """Whether runs ``a`` and ``b`` (run-table rows) can be compared on ``corpus``: both used it and
    agree on every field of :data:`COMPARABLE_KEY` (or ``fields``). The one definition the
    leakage and cross-corpus views use."""
    key = comparable_key(a, corpus, fields)
    return key is not None and key == comparable_key(b, corpus, fields)


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
                "random_audit": _audit_text(leaky["audit"]), "speaker_independent_audit": _audit_text(si["audit"]),
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
    n_resamples = int(_float(si.get("ci_n_resamples")) or stats.N_RESAMPLES)
    seed = int(_float(si.get("ci_seed")) or 0)
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
    return {"leakage_pooled": res["ua"]["delta"], "leakage_ci_low": _float(res["ua"]["low"]),
            "leakage_ci_high": _float(res["ua"]["high"]), "leakage_ci_unit": unit,
            "leakage_ci_utterances": int(len(both)), "leakage_ci_note": "; ".join(notes)}


# -- compressed vs fp32, per speaker ------------------------------------------------------------


PAIRED_COLUMNS = ["run_id", "model", "recipe", "reference_run", "reference_recipe", "protocol", "label_map", "head",
                  "mode", "delta_ua", "delta_ci_low", "delta_ci_high", "p_value", "mcnemar_p", "agreement",
                  "verdict", "delta_wa", "delta_wa_ci_low", "delta_wa_ci_high", "delta_macro_f1",
                  "delta_macro_f1_ci_low", "delta_macro_f1_ci_high", "clusters", "n_resamples", "confidence",
                  "marks"]


def verdict(low, high, reference: str = "fp32", covers_zero=None) -> str:
    """What a difference's interval says: "indistinguishable from fp32" when it covers 0, else
    "worse than fp32" (all below 0) or "better than fp32" (all above); "—" without an interval."""
    low, high = _float(low), _float(high)
    if low is None or high is None:
        if covers_zero is None:
            return "—"
        return f"indistinguishable from {reference}" if covers_zero else f"different from {reference}"
    if low <= 0 <= high:
        return f"indistinguishable from {reference}"
    return f"worse than {reference}" if high < 0 else f"better than {reference}"


def paired_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run with a stored paired comparison to the reference (fp32) run of its
    invocation (``summary["paired"]``): the differences (new minus fp32) of UA, WA and macro-F1
    with their speaker-clustered intervals, the bootstrap p-value of ΔUA, McNemar's exact p,
    prediction agreement, the verdict, and ``recall_change_<class>`` columns."""
    out = []
    for r in table.to_dict("records"):
        p = r.get("paired")
        if not p:
            continue
        d = {k: p.get(k) if isinstance(p.get(k), dict) else {} for k in SCORES}
        mc = p.get("mcnemar") if isinstance(p.get("mcnemar"), dict) else {}
        ref = p.get("reference_recipe") or "fp32"
        out.append({
            "run_id": r["run_id"], "model": r["model"], "recipe": r["recipe"], "reference_run": p.get("reference_run"),
            "reference_recipe": ref, "protocol": r["protocol"], "label_map": r["label_map"], "head": r["head"],
            "mode": r["mode"], "delta_ua": _float(d["ua"].get("delta")), "delta_ci_low": _float(d["ua"].get("low")),
            "delta_ci_high": _float(d["ua"].get("high")), "p_value": _float(d["ua"].get("p_value")),
            "mcnemar_p": _float(mc.get("p_value")), "agreement": _float(p.get("agreement")),
            "verdict": verdict(d["ua"].get("low"), d["ua"].get("high"), ref, d["ua"].get("covers_zero")),
            **{f"delta_{k}{suffix}": _float(d[k].get(src)) for k in ("wa", "macro_f1")
               for suffix, src in (("", "delta"), ("_ci_low", "low"), ("_ci_high", "high"))},
            "clusters": p.get("clusters"), "n_resamples": p.get("n_resamples"), "confidence": p.get("confidence"),
            "marks": r["marks"],
            **{f"recall_change_{c}": _float(v) for c, v in (p.get("recall_change") or {}).items()},
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
                        "n": s.get("n"), "ua": _float(s.get("ua")), "wa": _float(s.get("wa")),
                        "macro_f1": _float(s.get("macro_f1")), "marks": r["marks"]})
    return pd.DataFrame(out, columns=SPEAKER_COLUMNS)


def _sortable(x) -> float:
    x = _float(x)
    return float("inf") if x is None else x


def _audit_text(audit: list[dict]) -> str:
    """Per fold: speakers shared by train and test / speakers in test."""
    return ", ".join(f"{f['shared']}/{f['test_speakers']}" for f in audit)


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


# -- building ------------------------------------------------------------------------------------


@dataclass
class Report:
    runs: pd.DataFrame
    leakage: pd.DataFrame
    cross: pd.DataFrame
    store: str
    figures: dict = field(default_factory=dict)  # file stem -> (title, Figure)
    paired: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PAIRED_COLUMNS))
    speakers: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SPEAKER_COLUMNS))


def build(db: Store, run_ids: list[int] | None = None, figures: bool = True) -> Report:
    """Read the store and assemble every table (and, with ``figures``, every plot)."""
    table = add_fronts(run_table(db, select_runs(db.runs(), run_ids)))
    rep = Report(table, leakage_table(table, db), cross_corpus_table(table), str(db.path),
                 paired=paired_table(table), speakers=speakers_table(table))
    if figures:
        from serbench import plots  # lazy: matplotlib/seaborn are slow to import; the gate needs neither

        rep.figures = plots.report_figures(rep.runs, rep.cross, rep.speakers)
    return rep


def plot_label(r: dict, data_in_title: bool = False) -> str:
    """model/recipe plus the run's marks (SYNTHETIC left out where the plot's title carries it)."""
    marks = [m for m in r["marks"].split(", ") if m and not (data_in_title and m == "SYNTHETIC")]
    return r["label"] + (f" [{', '.join(marks)}]" if marks else "")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# -- display tables (strings) ------------------------------------------------------------------


def pct(x) -> str:
    return "—" if x is None or pd.isna(x) else f"{100 * float(x):.1f}"


def _pm(mean, std) -> str:
    if mean is None or pd.isna(mean):
        return "—"
    return pct(mean) + ("" if std is None or pd.isna(std) else f" ± {100 * float(std):.1f}")


def _num(x, spec: str) -> str:
    return "—" if x is None or pd.isna(x) else format(float(x), spec)


def _ci(value, low, high, scale: float = 100, spec: str = ".1f") -> str:
    """``61.4 [58.0, 64.9]`` (in points for fractions); "—" where the run has no interval."""
    value, low, high = _float(value), _float(low), _float(high)
    if value is None:
        return "—"
    text = _fmt(scale * value, spec)
    if low is None or high is None:
        return text
    return f"{text} [{_fmt(scale * low, spec)}, {_fmt(scale * high, spec)}]"


def _fmt(x: float, spec: str) -> str:
    """``format`` without a negative zero (-0.00001 shows as 0.0 / +0.0, not -0.0)."""
    text = format(x, spec)
    return format(0.0, spec) if float(text) == 0 else text


def _p(x) -> str:
    x = _float(x)
    return "—" if x is None else ("< 0.001" if x < 0.001 else f"{x:.3f}")


def _front(x) -> str:
    return "n/a" if x is None or pd.isna(x) else ("yes" if x else "no")


def runs_display(t: pd.DataFrame) -> pd.DataFrame:
    """The per-run table for humans: percentages, mean ± std over folds, marks spelled out."""
    classes = list(dict.fromkeys(c for cs in t["classes"] for c in cs))
    rows = []
    for r in t.to_dict("records"):
        rows.append({
            "run": r["run_id"], "model/recipe": r["label"], "head": r["head"], "protocol": r["protocol"],
            "label map": r["label_map"],
            "UA % (fold mean ± std)": _pm(r["ua"], r["ua_std"]),
            "UA % pooled [95% speaker CI]": _ci(r.get("ua_pooled"), r.get("ua_ci_low"), r.get("ua_ci_high")),
            "WA % (fold mean ± std)": _pm(r["wa"], r["wa_std"]),
            "macro-F1 % (fold mean ± std)": _pm(r["macro_f1"], r["macro_f1_std"]),
            **{f"F1 {c} %": pct(r["f1"].get(c)) for c in classes},
            "size MB": _num(r["size_mb"], ".1f"), "latency p50 ms": _num(r["latency_p50_ms"], ".0f"),
            "UA/MB": ("n/a (weight-free, 0 MB)" if r["size_mb"] == 0 else _num(r["acc_per_mb"], ".3g")),
            "energy J/clip": _num(r["energy_j_per_clip"], ".3g"),
            "fidelity cos": _num(r["fidelity_cosine"], ".4f"), "weights": r["weights"],
            "data": r["data"] + (f" ({r['synthetic_corpora']})" if r["data"] == "PARTLY SYNTHETIC" else ""),
            "flags": r["flags"] or "",
        })
    return pd.DataFrame(rows)


def fronts_display(t: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "group": r["pareto_group"], "model/recipe": plot_label(r), "size MB": _num(r["size_mb"], ".1f"),
        "latency p50 ms": _num(r["latency_p50_ms"], ".0f"), "UA %": pct(r["ua"]),
        "size front": _front(r["front_size"]), "latency front": _front(r["front_latency"]),
        "3-D front": _front(r["front_3d"]),
    } for r in t.to_dict("records")])


def leakage_display(t: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "model/recipe": f"{r['model']}/{r['recipe']}" + (" (ft)" if r["mode"] == "finetune" else ""),
        "head": r["head"], "corpus": r["corpus"], "label map": r["label_map"], "random split": r["random_protocol"],
        "speaker-independent": r["speaker_independent_protocol"], "UA random %": pct(r["ua_random"]),
        "UA speaker-indep. %": pct(r["ua_speaker_independent"]),
        "leakage (points)": _num(None if r["leakage"] is None else 100 * r["leakage"], "+.1f"),
        "random: shared/test speakers per fold": r["random_audit"],
        "speaker-indep.: shared/test speakers per fold": r["speaker_independent_audit"],
        "leakage pooled [95% CI] (points)": _ci(r.get("leakage_pooled"), r.get("leakage_ci_low"),
                                                r.get("leakage_ci_high"), spec="+.1f"),
        "CI resamples": _leakage_unit_text(r),
        "check": r["check"], "marks": r["marks"], "runs": r["run_ids"],
    } for r in t.to_dict("records")])


def _leakage_unit_text(r: dict) -> str:
    unit = r.get("leakage_ci_unit")
    if not unit or pd.isna(unit):
        return "—"
    note = r.get("leakage_ci_note")
    n = r.get("leakage_ci_utterances")
    text = f"{unit}s" if unit == "speaker" else unit
    text += "" if n is None or pd.isna(n) else f", {int(n)} utterances"
    return text + (f"; {note}" if isinstance(note, str) and note else "")


def paired_display(t: pd.DataFrame) -> pd.DataFrame:
    classes = [c[len("recall_change_"):] for c in t.columns if c.startswith("recall_change_")]
    return pd.DataFrame([{
        "run": r["run_id"], "model/recipe": f"{r['model']}/{r['recipe']}" + (" (ft)" if r["mode"] == "finetune" else ""),
        "vs run": f"{r['reference_run']} ({r['reference_recipe']})", "protocol": r["protocol"], "head": r["head"],
        "label map": r["label_map"],
        "ΔUA points [95% speaker CI]": _ci(r["delta_ua"], r["delta_ci_low"], r["delta_ci_high"], spec="+.1f"),
        "p (bootstrap)": _p(r["p_value"]), "McNemar p": _p(r["mcnemar_p"]),
        "agreement %": pct(r["agreement"]), "verdict": r["verdict"],
        "ΔWA points": _ci(r["delta_wa"], r["delta_wa_ci_low"], r["delta_wa_ci_high"], spec="+.1f"),
        "Δmacro-F1 points": _ci(r["delta_macro_f1"], r["delta_macro_f1_ci_low"], r["delta_macro_f1_ci_high"],
                                spec="+.1f"),
        **{f"Δrecall {c}": _ci(r.get(f"recall_change_{c}"), None, None, spec="+.1f") for c in classes},
        "marks": r["marks"],
    } for r in t.to_dict("records")])


WORST = 3  # speakers named per run


def speakers_display(runs: pd.DataFrame, speakers: pd.DataFrame) -> pd.DataFrame:
    """Per run with per-speaker results: how many test speakers, the median and range of their UA,
    and the :data:`WORST` worst speakers by name."""
    rows = []
    for r in runs.to_dict("records"):
        s = speakers[speakers["run_id"] == r["run_id"]]
        if s.empty:
            continue
        ua = s["ua"].astype(float)
        worst = "; ".join(f"{x['speaker']} {pct(x['ua'])} (n {x['n']})" for x in s.head(WORST).to_dict("records"))
        rows.append({"run": r["run_id"], "model/recipe": plot_label(r), "protocol": r["protocol"],
                     "test speakers": len(s), "speaker UA % median": pct(ua.median()),
                     "speaker UA % range": f"{pct(ua.min())} – {pct(ua.max())}",
                     f"worst {WORST} speakers (UA %, utterances)": worst})
    return pd.DataFrame(rows)


def cross_display(t: pd.DataFrame) -> pd.DataFrame:
    recall_cols = [c for c in t.columns if c.startswith("recall_")]
    return pd.DataFrame([{
        "model/recipe": f"{r['model']}/{r['recipe']}" + (" (ft)" if r["mode"] == "finetune" else ""),
        "head": r["head"], "train -> target": f"{r['train']} -> {r['target']}", "label maps": r["label_map"],
        "UA cross %": pct(r["ua_cross"]),
        "in-corpus": f"{r['in_corpus_protocol']} on {r['in_corpus']}" if r["in_corpus_protocol"] else "—",
        "UA in-corpus %": pct(r["ua_in_corpus"]),
        "gap (points)": _num(None if r["gap"] is None else 100 * r["gap"], "+.1f"),
        **{f"recall {c[len('recall_'):]} %": pct(r[c]) for c in recall_cols},
        "marks": r["marks"], "run": r["run_id"],
    } for r in t.to_dict("records")])


# -- writing -------------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write to a temporary name beside ``path``, then rename over it (see :mod:`serbench.atomic`)."""
    return atomic.write_bytes(path, data, what="report file")


CSV_DROP = ["confusion", "recall", "f1", "audit", "classes", "label_maps", "per_speaker", "paired"]  # label_map: the readable form
MARKER = ".serbench-report.json"  # claims a report folder first, lists what serbench wrote there last
REPORT_FILES = {"index.html", "report.md", "runs.csv", "leakage.csv", "cross_corpus.csv", "paired.csv",
                "speakers.csv", "plots", MARKER}


def is_report_folder(out: Path) -> bool:
    """Whether ``out`` holds a serbench report: it has the marker file, or (reports written before
    the marker) only report files and a ``report.md`` that serbench wrote."""
    if (out / MARKER).is_file():
        return True
    try:
        names = {p.name for p in out.iterdir()}
        return names <= REPORT_FILES and (out / "report.md").read_text(errors="replace").startswith(
            "# serbench report")
    except OSError:
        return False


def check_out(out: str | Path, force: bool = False) -> Path:
    """Refuse an ``out`` that is a file, or a non-empty folder that is not a previous serbench
    report (its files would be overwritten) unless ``force``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SerbenchError(f"--out {out} is a file, not a folder")
    if force or not out.exists():
        return out
    try:
        empty = not any(out.iterdir())
    except OSError as exc:
        raise atomic.error(exc, out, "report folder", "read") from exc
    if not empty and not is_report_folder(out):
        raise SerbenchError(f"--out {out} is not empty and holds no serbench report (its report.md, runs.csv ... "
                            "would be overwritten); choose another folder or pass --force")
    return out


def write(rep: Report, out: str | Path, force: bool = False) -> list[Path]:
    """Render ``rep`` under ``out``: index.html (self-contained), report.md, CSVs, plots/*.png|svg,
    and the marker listing them. ``out`` must be new, empty or a previous report (see
    :func:`check_out`); files of a previous report that this one does not write again (plots of
    runs no longer selected) are removed, nothing else is. Returns the paths written."""
    out = check_out(out, force)
    old_files = _marked_files(out)
    _write_marker(rep, out, old_files, complete=False)  # an interrupted report is still recognised as one
    written, images = [], {}
    if rep.figures:
        from serbench import plots
    for stem, (title, fig) in rep.figures.items():
        files = plots.render(fig)
        images[stem] = (title, files["png"])
        for fmt, data in files.items():
            written.append(write_atomic(out / "plots" / f"{stem}.{fmt}", data))
    runs_csv = rep.runs.drop(columns=CSV_DROP).assign(
        train_corpora=lambda d: d["train_corpora"].map("+".join),
        test_corpora=lambda d: d["test_corpora"].map("+".join),
        train_only=lambda d: d["train_only"].map("+".join),
        audit=rep.runs["audit"].map(_audit_text))
    for name, frame in (("runs.csv", runs_csv), ("leakage.csv", rep.leakage), ("cross_corpus.csv", rep.cross),
                        ("paired.csv", rep.paired), ("speakers.csv", rep.speakers)):
        written.append(write_atomic(out / name, frame.to_csv(index=False)))
    sections = _sections(rep)
    written.append(write_atomic(out / "report.md", _markdown(rep, sections, images)))
    written.append(write_atomic(out / "index.html", _html(rep, sections, images)))
    rel = sorted(str(p.relative_to(out)) for p in written)
    for stale in sorted(set(old_files) - set(rel)):
        (out / stale).unlink(missing_ok=True)
    _write_marker(rep, out, rel, complete=True)
    return written


def _write_marker(rep: Report, out: Path, files: list[str], complete: bool) -> None:
    write_atomic(out / MARKER, json.dumps({"written_by": "serbench compare", "serbench": __version__,
                                           "created": _now(), "store": rep.store, "complete": complete,
                                           "files": sorted(files)}, indent=2))


def _marked_files(out: Path) -> list[str]:
    """The files a previous report listed in its marker (only plain names under ``out``)."""
    try:
        files = json.loads((out / MARKER).read_text()).get("files") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str) and Path(f).parts and Path(f).parts[0] in REPORT_FILES
            and not Path(f).is_absolute() and ".." not in Path(f).parts]


def _sections(rep: Report) -> list[tuple[str, str, pd.DataFrame | None, list[str]]]:
    """(title, intro, display table, figure stems) in page order, shared by HTML and Markdown."""
    stems = list(rep.figures)
    pick = lambda prefix: [s for s in stems if s.startswith(prefix)]  # noqa: E731
    return [
        ("Runs", "UA, WA and macro-F1: mean ± std over folds (%). UA pooled [95% speaker CI]: UA of all "
         "folds' test predictions pooled, with the 95% interval of a bootstrap that resamples test speakers "
         "(not utterances: one speaker's clips are correlated); — for runs stored without it. UA/MB: UA as a "
         "fraction per MB of model (not applicable to weight-free models). Fidelity: centred cosine of the "
         "recipe's embeddings to fp32's.", runs_display(rep.runs), []),
        ("Compressed vs fp32", "Each compressed run against the fp32 run of the same serbench run invocation (same test "
         "utterances, folds and heads): difference new minus fp32 in points, with a paired bootstrap over "
         "test speakers (95% interval, two-sided p); McNemar's exact test on per-utterance correctness; "
         "agreement: share of utterances with the same predicted class. A difference whose interval covers 0 "
         "is indistinguishable from fp32.", paired_display(rep.paired) if len(rep.paired) else None, []),
        ("Pareto fronts", "Smaller size or latency and higher UA are better; a run is on the front when no other "
         "run of the same protocol and kind of data is at least as good on every axis and better on one. "
         "n/a: the run lacks that measurement (e.g. made with --no-measure).",
         fronts_display(rep.runs), pick("pareto-")),
        ("Per-speaker results", "UA per test speaker (pooled over folds), per run: the spread and the worst "
         "speakers by name; every speaker's UA in the strip plot. speakers.csv holds all of them.",
         speakers_display(rep.runs, rep.speakers) if len(rep.speakers) else None, pick("speakers-")),
        ("Speaker leakage", "UA on random (speaker-dependent) splits minus UA on speaker-independent splits of "
         "the same corpus under the same label map and classes, same model, recipe, head, mode and weights. "
         "Leakage (points): difference of the fold means. Pooled [95% CI]: the difference on the utterances "
         "both runs predicted, with a paired bootstrap interval (resampling speakers where the predictions "
         "name them, else utterances, which gives too narrow an interval: see the resamples column). "
         "Audits: speakers shared by train and test / speakers in test, per fold.",
         leakage_display(rep.leakage) if len(rep.leakage) else None, []),
        ("Cross-corpus", "Cross-corpus UA next to speaker-independent in-corpus UA of the same setup (same "
         "label map on the shared corpus, classes, model, recipe, head, mode and weights); recall "
         "per class on the target corpus.", cross_display(rep.cross) if len(rep.cross) else None,
         pick("cross-corpus")),
        ("Confusion matrices", "Row-normalised: each row is a true class and sums to 100%; the diagonal is "
         "per-class recall (pooled over folds).", None, pick("confusion-")),
    ]


def _banner(rep: Report) -> str:
    marked = rep.runs["marks"].astype(bool).sum()
    return f"{marked} of {len(rep.runs)} runs are marked. {MARK_NOTE}" if marked else ""


def _markdown(rep: Report, sections, images) -> str:
    parts = [f"# serbench report\n\nGenerated {_now()} from `{rep.store}` ({len(rep.runs)} runs).\n"]
    if _banner(rep):
        parts.append(f"> **{_banner(rep)}**\n")
    for title, intro, table, stems in sections:
        parts.append(f"## {title}\n\n{intro}\n")
        if table is not None:
            parts.append(tabulate(table, headers="keys", tablefmt="pipe", showindex=False,
                                  disable_numparse=True) + "\n")
        elif not stems:
            parts.append("_No runs for this view._\n")
        parts += [f"![{images[s][0]}](plots/{s}.png)\n" for s in stems if s in images]
    return "\n".join(parts)


CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;
font-size:12px;margin:8px 0 20px}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f0f0f0}.banner{background:#fff3cd;border:1px solid #e0c060;padding:8px 12px;
font-weight:bold}.figs{display:flex;flex-wrap:wrap;gap:12px}.figs figure{margin:0}
.figs img{max-width:640px;border:1px solid #ddd}figcaption{font-size:11px;color:#555}"""


def _html(rep: Report, sections, images) -> str:
    e = html.escape
    body = [f"<h1>serbench report</h1><p>Generated {e(_now())} from <code>{e(rep.store)}</code> "
            f"({len(rep.runs)} runs).</p>"]
    if _banner(rep):
        body.append(f'<p class="banner">{e(_banner(rep))}</p>')
    for title, intro, table, stems in sections:
        body.append(f"<h2>{e(title)}</h2><p>{e(intro)}</p>")
        if table is not None:
            body.append(table.to_html(index=False, escape=True, border=0))
        elif not stems:
            body.append("<p><em>No runs for this view.</em></p>")
        figs = [f'<figure><img alt="{e(images[s][0])}" src="data:image/png;base64,'
                f'{base64.b64encode(images[s][1]).decode()}"><figcaption>{e(images[s][0])}</figcaption></figure>'
                for s in stems if s in images]
        if figs:
            body.append('<div class="figs">' + "".join(figs) + "</div>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>serbench report</title>'
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def default_out() -> Path:
    return Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")

