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
* Files are written to a temporary name and renamed, so an interrupted report never leaves a
  half-written file under the final name.
"""
from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from serbench import pareto
from serbench.errors import SerbenchError
from serbench.store import Store

SELECT_KEY = ("model", "recipe", "protocol", "mode", "synthetic")
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
    """The store at ``path``; an error naming it if there is none (opening would create one)."""
    path = Path(path)
    if not path.is_file():
        raise SerbenchError(f"{path}: no results store there (run `serbench run` first, or pass --store)")
    return Store(path)


def select_runs(runs: pd.DataFrame, run_ids: list[int] | None = None, key=SELECT_KEY) -> pd.DataFrame:
    """The runs a report covers: ``run_ids`` (each must exist and be finished), else the latest
    finished run per ``key`` (by default model, recipe, protocol, mode and synthetic-or-real)."""
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
    data_kind, synthetic_corpora = _data_kind(cfg)
    weights_kind = _weights_kind(cfg.get("weights_source") or {})
    marks = (["SYNTHETIC"] if data_kind != "real" else []) + (["RANDOM-INIT"] if weights_kind == "random" else [])
    label = f"{run['model']}/{run['recipe']}" + (" (ft)" if run["mode"] == "finetune" else "")
    ua, size = _mean(summary, "ua"), meas["size_mb"]
    folds = db.folds(int(run["id"]))
    row = {
        "run_id": int(run["id"]), "model": run["model"], "recipe": run["recipe"], "protocol": run["protocol"],
        "mode": run["mode"], "created": run["created"], "label": label, "marks": ", ".join(marks),
        "data": data_kind, "synthetic_corpora": ",".join(synthetic_corpora),
        "weights": cfg.get("weights") or str(cfg.get("weights_source")), "weights_kind": weights_kind,
        "corpus": proto.get("corpus"), "unit": proto.get("unit"), "kind": proto.get("kind"),
        "train_corpora": list(proto.get("train") or []), "test_corpora": list(proto.get("test") or []),
        "train_only": list(proto.get("train_only") or []), "folds": summary.get("folds"),
        "ua": ua, "ua_std": _std(summary, "ua"), "wa": _mean(summary, "wa"), "wa_std": _std(summary, "wa"),
        "macro_f1": _mean(summary, "macro_f1"), "macro_f1_std": _std(summary, "macro_f1"),
        "classes": list(summary.get("classes") or []),
        **meas,
        "acc_per_mb": acc_per_mb(ua, size),
        "flags": "; ".join(stored.get("flags") or []),
        "confusion": summary.get("confusion"),
        "recall": {c: v.get("mean") for c, v in (summary.get("recall") or {}).items()},
        "f1": {c: v.get("mean") for c, v in (summary.get("f1") or {}).items()},
        "audit": [_fold_audit(a) for a in folds["audit"].tolist()],
    }
    return row


def acc_per_mb(ua: float | None, size_mb: float | None) -> float | None:
    """UA per MB of model; ``None`` (not applicable) for a weight-free model of 0 MB or unknown size."""
    if ua is None or size_mb is None or not size_mb > 0:
        return None
    return float(ua) / float(size_mb)


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
    (same protocol, same kind of data), ``None`` where the run lacks a needed number."""
    out = table.copy()
    out["pareto_group"] = [f"{p} · {d}" for p, d in zip(out["protocol"], out["data"])]
    for col in FRONTS:
        out[col] = pd.Series([None] * len(out), dtype=object)
    for _, idx in out.groupby("pareto_group", sort=False).groups.items():
        points = out.loc[idx].to_dict("records")
        for col, objectives in FRONTS.items():
            mask = pareto.front(points, objectives)
            for i, p, on in zip(idx, points, mask):
                out.at[i, col] = on if pareto.comparable(p, objectives) else None
    return out


def _same_setup(a: dict, b: dict) -> bool:
    return all(a[k] == b[k] for k in ("model", "recipe", "mode", "data", "weights"))


def leakage_table(table: pd.DataFrame) -> pd.DataFrame:
    """For each model (and recipe, mode, data, weights): random-split UA minus speaker-independent
    UA on the same corpus, with both runs' per-fold audits (speakers shared by train and test)."""
    rows = table.to_dict("records")
    within = [r for r in rows if r["corpus"] and not r["test_corpora"]]
    out = []
    for leaky in (r for r in within if r["unit"] == "utterance"):
        for si in (r for r in within if r["unit"] != "utterance"):
            if si["corpus"] != leaky["corpus"] or not _same_setup(leaky, si):
                continue
            si_shared = [f["shared"] for f in si["audit"]]
            out.append({
                "model": leaky["model"], "recipe": leaky["recipe"], "mode": leaky["mode"], "corpus": leaky["corpus"],
                "random_protocol": leaky["protocol"], "speaker_independent_protocol": si["protocol"],
                "ua_random": leaky["ua"], "ua_speaker_independent": si["ua"],
                "leakage": None if None in (leaky["ua"], si["ua"]) else leaky["ua"] - si["ua"],
                "random_audit": _audit_text(leaky["audit"]), "speaker_independent_audit": _audit_text(si["audit"]),
                "check": "ok" if not any(si_shared) else "AUDIT: speaker-independent run shares speakers",
                "marks": leaky["marks"], "run_ids": f"{leaky['run_id']} vs {si['run_id']}",
            })
    return pd.DataFrame(out, columns=LEAKAGE_COLUMNS)


LEAKAGE_COLUMNS = ["model", "recipe", "mode", "corpus", "random_protocol", "speaker_independent_protocol",
                   "ua_random", "ua_speaker_independent", "leakage", "random_audit",
                   "speaker_independent_audit", "check", "marks", "run_ids"]


def _audit_text(audit: list[dict]) -> str:
    """Per fold: speakers shared by train and test / speakers in test."""
    return ", ".join(f"{f['shared']}/{f['test_speakers']}" for f in audit)


def cross_corpus_table(table: pd.DataFrame) -> pd.DataFrame:
    """Each cross-corpus run next to the same setup's speaker-independent in-corpus runs on its
    source or target corpora (in-corpus UA, cross-corpus UA, the gap), with per-class recall on
    the target corpus. A cross-corpus run without an in-corpus partner still gets its row."""
    rows = table.to_dict("records")
    within = [r for r in rows if r["corpus"] and not r["test_corpora"] and r["unit"] != "utterance"]
    out = []
    for cross in (r for r in rows if r["test_corpora"]):
        base = {"model": cross["model"], "recipe": cross["recipe"], "mode": cross["mode"],
                "protocol": cross["protocol"], "train": "+".join(cross["train_corpora"]),
                "target": "+".join(cross["test_corpora"]), "ua_cross": cross["ua"],
                **{f"recall_{c}": cross["recall"].get(c) for c in cross["classes"]},
                "marks": cross["marks"], "run_id": cross["run_id"]}
        partners = [r for r in within if _same_setup(cross, r)
                    and r["corpus"] in cross["train_corpora"] + cross["test_corpora"]]
        for r in partners or [None]:
            extra = {"in_corpus_protocol": None, "in_corpus": None, "ua_in_corpus": None, "gap": None}
            if r is not None:
                role = "target" if r["corpus"] in cross["test_corpora"] else "source"
                extra = {"in_corpus_protocol": r["protocol"], "in_corpus": f"{r['corpus']} ({role})",
                         "ua_in_corpus": r["ua"],
                         "gap": None if None in (r["ua"], cross["ua"]) else r["ua"] - cross["ua"]}
            out.append({**base, **extra})
    return pd.DataFrame(out)


# -- building ------------------------------------------------------------------------------------


@dataclass
class Report:
    runs: pd.DataFrame
    leakage: pd.DataFrame
    cross: pd.DataFrame
    store: str
    figures: dict = field(default_factory=dict)  # file stem -> (title, Figure)


def build(db: Store, run_ids: list[int] | None = None, figures: bool = True) -> Report:
    """Read the store and assemble every table (and, with ``figures``, every plot)."""
    table = add_fronts(run_table(db, select_runs(db.runs(), run_ids)))
    rep = Report(table, leakage_table(table), cross_corpus_table(table), str(db.path))
    if figures:
        from serbench import plots  # lazy: matplotlib/seaborn are slow to import; the gate needs neither

        rep.figures = plots.report_figures(rep.runs, rep.cross)
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


def _front(x) -> str:
    return "n/a" if x is None or pd.isna(x) else ("yes" if x else "no")


def runs_display(t: pd.DataFrame) -> pd.DataFrame:
    """The per-run table for humans: percentages, mean ± std over folds, marks spelled out."""
    classes = list(dict.fromkeys(c for cs in t["classes"] for c in cs))
    rows = []
    for r in t.to_dict("records"):
        rows.append({
            "run": r["run_id"], "model/recipe": r["label"], "protocol": r["protocol"],
            "UA %": _pm(r["ua"], r["ua_std"]), "WA %": _pm(r["wa"], r["wa_std"]),
            "macro-F1 %": _pm(r["macro_f1"], r["macro_f1_std"]),
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
        "corpus": r["corpus"], "random split": r["random_protocol"],
        "speaker-independent": r["speaker_independent_protocol"], "UA random %": pct(r["ua_random"]),
        "UA speaker-indep. %": pct(r["ua_speaker_independent"]),
        "leakage (points)": _num(None if r["leakage"] is None else 100 * r["leakage"], "+.1f"),
        "random: shared/test speakers per fold": r["random_audit"],
        "speaker-indep.: shared/test speakers per fold": r["speaker_independent_audit"],
        "check": r["check"], "marks": r["marks"], "runs": r["run_ids"],
    } for r in t.to_dict("records")])


def cross_display(t: pd.DataFrame) -> pd.DataFrame:
    recall_cols = [c for c in t.columns if c.startswith("recall_")]
    return pd.DataFrame([{
        "model/recipe": f"{r['model']}/{r['recipe']}" + (" (ft)" if r["mode"] == "finetune" else ""),
        "train -> target": f"{r['train']} -> {r['target']}", "UA cross %": pct(r["ua_cross"]),
        "in-corpus": f"{r['in_corpus_protocol']} on {r['in_corpus']}" if r["in_corpus_protocol"] else "—",
        "UA in-corpus %": pct(r["ua_in_corpus"]),
        "gap (points)": _num(None if r["gap"] is None else 100 * r["gap"], "+.1f"),
        **{f"recall {c[len('recall_'):]} %": pct(r[c]) for c in recall_cols},
        "marks": r["marks"], "run": r["run_id"],
    } for r in t.to_dict("records")])


# -- writing -------------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write to a temporary name beside ``path``, then rename over it (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


CSV_DROP = ["confusion", "recall", "f1", "audit", "classes"]


def write(rep: Report, out: str | Path) -> list[Path]:
    """Render ``rep`` under ``out``: index.html (self-contained), report.md, CSVs, plots/*.png|svg.
    Returns the paths written."""
    out = Path(out)
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
    for name, frame in (("runs.csv", runs_csv), ("leakage.csv", rep.leakage), ("cross_corpus.csv", rep.cross)):
        written.append(write_atomic(out / name, frame.to_csv(index=False)))
    sections = _sections(rep)
    written.append(write_atomic(out / "report.md", _markdown(rep, sections, images)))
    written.append(write_atomic(out / "index.html", _html(rep, sections, images)))
    return written


def _sections(rep: Report) -> list[tuple[str, str, pd.DataFrame | None, list[str]]]:
    """(title, intro, display table, figure stems) in page order, shared by HTML and Markdown."""
    stems = list(rep.figures)
    pick = lambda prefix: [s for s in stems if s.startswith(prefix)]  # noqa: E731
    return [
        ("Runs", "UA, WA and macro-F1: mean ± std over folds (%). UA/MB: UA as a fraction per MB of model "
         "(not applicable to weight-free models). Fidelity: centred cosine of the recipe's embeddings to fp32's.",
         runs_display(rep.runs), []),
        ("Pareto fronts", "Smaller size or latency and higher UA are better; a run is on the front when no other "
         "run of the same protocol and kind of data is at least as good on every axis and better on one. "
         "n/a: the run lacks that measurement (e.g. made with --no-measure).",
         fronts_display(rep.runs), pick("pareto-")),
        ("Speaker leakage", "UA on random (speaker-dependent) splits minus UA on speaker-independent splits of "
         "the same corpus, same model, recipe and weights. Audits: speakers shared by train and test / "
         "speakers in test, per fold.", leakage_display(rep.leakage) if len(rep.leakage) else None, []),
        ("Cross-corpus", "Cross-corpus UA next to speaker-independent in-corpus UA of the same setup; recall "
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

