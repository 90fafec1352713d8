"""The results store -> tables of numbers: which runs a view covers, one row per run, the Pareto
fronts, and when two runs may be compared at all. Nothing here formats for humans (that is
:mod:`serbench.fmt`) or writes files (:mod:`serbench.report`); ``serbench compare``,
``serbench gate`` and :func:`serbench.api.results` all read the store through this module, so a
run's UA, size or data marks mean the same thing in every one of them. The views that set runs
side by side (leakage, compressed vs fp32, per speaker, cross-corpus) are in :mod:`serbench.views`.
(The name is not ``results``: ``serbench.results`` is the front door's function, which a submodule
of that name would replace on the package the moment it was imported.)

Choices, and why:

* Fronts are computed **per protocol, label map and kind of data** (see :func:`add_fronts`): a UA
  measured leave-one-session-out cannot be traded against one measured on random folds, nor
  synthetic against real, so putting them on one front would be meaningless.
* Accuracy per MB is UA (a fraction) / size in MB. A weight-free model (eGeMAPS, 0 MB) has no such
  ratio: it is not applicable (``None``), never infinity, and it still takes part in the size
  front with its 0 MB (see :mod:`serbench.pareto`).
* Every row of a run on synthetic data or random-init weights carries the marks ``SYNTHETIC`` /
  ``RANDOM-INIT``, so no number can be quoted without them.
* Two runs are set side by side only when :func:`comparable` says so (same corpus, label map and
  classes, model, recipe, head, mode, weights and kind of data): a 4-class UA minus an 8-class UA,
  or an MLP probe against a logistic-regression one, measures nothing. For the same reason the
  default selection keeps the latest run per label map and head.
* A run's UA/WA/macro-F1 comes twice: the mean ± std over folds and the pooled score with its 95 %
  interval from a bootstrap over *speakers* (stored by ``serbench run`` in ``summary["ci"]``; see
  :mod:`serbench.stats`). Runs stored before intervals existed get ``None`` there; nothing fails.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from serbench import pareto, provenance, stats
from serbench.errors import SerbenchError
from serbench.fmt import finite, label_map_text
from serbench.store import DamagedRow, Store

SELECT_KEY = ("model", "recipe", "protocol", "mode", "synthetic", "label_map", "head")
DEFAULT_HEAD = "mlp"  # runs stored before the head choice have no "head" in their config: the MLP probe
FRONTS = {"front_size": {"size_mb": "min", "ua": "max"},
          "front_latency": {"latency_p50_ms": "min", "ua": "max"},
          "front_3d": {"size_mb": "min", "latency_p50_ms": "min", "ua": "max"}}
# run-table column -> the measurement key the runner stores it under (see serbench.measure.for_run)
MEASURES = {"fidelity_cosine": "centered_cosine", "fidelity_rel_l2": "rel_l2", "peak_rss_mb": "memory_peak_rss_mb",
            "throughput_x_realtime": "throughput_audio_s_per_s", "params": "params",
            "latency_p50_ms": "latency_p50_ms", "latency_p90_ms": "latency_p90_ms",
            "energy_j_per_clip": "energy_j_per_clip", "size_mb": "size_mb"}


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
        damaged = [runs.attrs.get("damaged", {})[i] for i in run_ids if i in runs.attrs.get("damaged", {})]
        if damaged:
            raise SerbenchError(damaged[0] + (f" (and {len(damaged) - 1} more asked for)" if len(damaged) > 1 else ""))
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
    """One row per run, raw numbers (fractions, MB, ms): what the CSV holds and the views use.
    A run whose folds or measurements are damaged in the store is left out with a warning naming
    it (the rest of the table is still made)."""
    rows, damaged = [], []
    for run in runs.to_dict("records"):
        try:
            rows.append(_run_row(db, run))
        except DamagedRow as exc:
            damaged.append(str(exc))
            print(f"warning: {exc}; run {run['id']} left out", file=sys.stderr)
    if damaged and not rows:
        raise SerbenchError(f"every run selected is damaged in the store: {damaged[0]}")
    return pd.DataFrame(rows)


def _run_row(db: Store, run: dict) -> dict:
    cfg, summary = run["config"], run["summary"] or {}
    proto = cfg.get("protocol") or {"name": run["protocol"]}
    meas = {}
    m = db.measurements(int(run["id"]))
    stored = dict(zip(m["key"].tolist(), m["value"].tolist()))
    for name, key in MEASURES.items():
        meas[name] = stored.get(key)
    if meas["params"] is None:  # the backbone's parameter count: its registry entry's `params`, which
        meas["params"] = (cfg.get("model_entry") or {}).get("params")  # the build checks to 0.1 %
    data_kind, synthetic_corpora = _data_kind(cfg)
    weights_kind = _weights_kind(cfg.get("weights_source") or {})
    marks = (["SYNTHETIC"] if data_kind != "real" else []) + (["RANDOM-INIT"] if weights_kind == "random" else [])
    label = f"{run['model']}/{run['recipe']}" + (" (ft)" if run["mode"] == "finetune" else "")
    maps = label_maps(cfg)
    ua, size = _mean(summary, "ua"), meas["size_mb"]
    folds = db.fold_results(int(run["id"]))
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
        "speed_on": speed_machine(stored.get("machine")),
        "flags": "; ".join(stored.get("flags") or []),
        "confusion": summary.get("confusion"),
        "recall": {c: v.get("mean") for c, v in (summary.get("recall") or {}).items()},
        "f1": {c: v.get("mean") for c, v in (summary.get("f1") or {}).items()},
        "audit": [_fold_audit(a) for a in folds["audit"].tolist()],
        "per_speaker": [s for s in (summary.get("per_speaker") or []) if isinstance(s, dict)],
        "paired": summary.get("paired") if isinstance(summary.get("paired"), dict) else None,
    }
    return row


def speed_machine(machine) -> str | None:
    """The machine a run's latency was measured on (:func:`serbench.provenance.isa_label` of its
    stored ``machine`` record; the CPU name alone for runs stored before the ISA was recorded),
    ``None`` for a run that measured nothing."""
    if not isinstance(machine, dict):
        return None
    return provenance.isa_label(machine.get("isa")) or machine.get("cpu")


def _ci_columns(summary: dict) -> dict:
    """``ua_pooled``, ``ua_ci_low``, ``ua_ci_high`` (and the same for wa, macro_f1) from the run's
    stored speaker-bootstrap (``summary["ci"]``), plus how many speakers and draws it used;
    ``None`` for runs stored before intervals existed."""
    ci = summary.get("ci") if isinstance(summary.get("ci"), dict) else {}
    out = {}
    for key in stats.SCORES:
        s = ci.get(key) if isinstance(ci.get(key), dict) else {}
        out.update({f"{key}_pooled": finite(s.get("value")), f"{key}_ci_low": finite(s.get("low")),
                    f"{key}_ci_high": finite(s.get("high"))})
    out.update({"ci_clusters": ci.get("clusters"), "ci_n_resamples": ci.get("n_resamples"),
                "ci_confidence": ci.get("confidence"), "ci_seed": ci.get("seed")})
    return out


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


# -- fronts and comparability --------------------------------------------------------------------


def add_fronts(table: pd.DataFrame) -> pd.DataFrame:
    """``front_size``, ``front_latency``, ``front_3d``: True/False on that front of the run's group
    (same protocol, same label maps, same kind of data: a 4-class UA cannot be traded against an
    8-class one), ``None`` where the run lacks a needed number. Fronts that trade latency are
    drawn within ``speed_group``: the same group *and* the same machine (``speed_on``: CPU and
    kernel ISA), since a latency measured with AMX kernels cannot be traded against one measured
    with AVX2 kernels. (Runs stored before machines were recorded stay in their group.)"""
    out = table.copy()
    out["pareto_group"] = [f"{p} · {m} · {d}" for p, m, d in zip(out["protocol"], out["label_map"], out["data"])]
    speed_on = out["speed_on"] if "speed_on" in out else pd.Series([None] * len(out), index=out.index)
    out["speed_group"] = [f"{g} · {s}" if s else g for g, s in zip(out["pareto_group"], speed_on)]
    for col in FRONTS:
        out[col] = pd.Series([None] * len(out), dtype=object)
    for col, objectives in FRONTS.items():
        by = "speed_group" if "latency_p50_ms" in objectives else "pareto_group"
        for _, idx in out.groupby(by, sort=False).groups.items():
            points = out.loc[idx].to_dict("records")
            if "size_mb" in objectives:
                # a weight-free model (0 MB: it has no artefact to size, though its openSMILE binary
                # and head are not 0 MB) is left off a size axis, where it would take every front;
                # its front value stays None, and the report draws it as a reference line
                idx = [i for i, p in zip(idx, points) if p.get("size_mb") != 0]
                points = [p for p in points if p.get("size_mb") != 0]
            mask = pareto.front(points, objectives) if points else []
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

