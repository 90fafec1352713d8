"""``serbench compare``: the results store -> one report (tables, Pareto fronts, plots, HTML/MD/CSV).

The report is built in two steps so each can be tested on its own: :func:`build` reads the store
into plain tables of numbers (:mod:`serbench.runtable` for one row per run and the fronts,
:mod:`serbench.views` for the leakage, compressed-vs-fp32, per-speaker and cross-corpus views) and
figures (:mod:`serbench.plots`); :func:`write` renders them to files, through display tables whose
numbers are written by :mod:`serbench.fmt`. Choices, and why:

* Every table row and plot label of a run on synthetic data or random-init weights carries the
  marks ``SYNTHETIC`` / ``RANDOM-INIT``, and a page with such runs opens with a banner saying what
  the marks mean, so no number can be quoted without them.
* A run's UA/WA/macro-F1 is shown twice, as the mean ± std over folds and as the pooled score with
  its 95 % speaker-bootstrap interval; runs stored before intervals existed show "—" and are left
  out of the views that need them; nothing fails on them.
* HTML and Markdown share one list of sections (:func:`_sections`), so the two pages never
  disagree; the HTML inlines its images and opens offline.
* Files are written to a temporary name and renamed (:mod:`serbench.atomic`), so an interrupted
  report never leaves a half-written file under the final name; a marker file claims the folder
  first and lists what was written, so a later report into the same folder removes only its own
  stale files and a folder holding anything else is refused unless ``--force``.
"""
from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from serbench import __version__, atomic
from serbench.errors import SerbenchError
from serbench.fmt import EQUIVALENCE_MARGIN, audit_text, ci, mean_std, num, p_value, pct, plot_label
from serbench.runtable import add_fronts, run_table, select_runs
from serbench.store import Store
from serbench.views import (PAIRED_COLUMNS, SPEAKER_COLUMNS, cross_corpus_table, leakage_table, paired_table,
                            speakers_table)

MARK_NOTE = ("Runs marked SYNTHETIC used the built-in synthetic corpora and runs marked RANDOM-INIT used "
             "randomly initialised (not pretrained) weights: their numbers show that the pipeline works, "
             "not how a model does on real speech.")


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
    files: list[Path] = field(default_factory=list)  # what write() wrote, once written
    margin: float = EQUIVALENCE_MARGIN   # of the verdicts, in UA points


def build(db: Store, run_ids: list[int] | None = None, figures: bool = True,
          margin: float = EQUIVALENCE_MARGIN) -> Report:
    """Read the store and assemble every table (and, with ``figures``, every plot); ``margin``: the
    verdicts' equivalence margin in UA points."""
    table = add_fronts(run_table(db, select_runs(db.runs(), run_ids)))
    rep = Report(table, leakage_table(table, db), cross_corpus_table(table), str(db.path),
                 paired=paired_table(table, margin), speakers=speakers_table(table), margin=margin)
    if figures:
        from serbench import plots  # lazy: matplotlib/seaborn are slow to import; tables alone need neither

        rep.figures = plots.report_figures(rep.runs, rep.cross, rep.speakers)
    return rep


# -- display tables (strings) ------------------------------------------------------------------


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
            "UA % (fold mean ± std)": mean_std(r["ua"], r["ua_std"]),
            "UA % pooled [95% speaker CI]": ci(r.get("ua_pooled"), r.get("ua_ci_low"), r.get("ua_ci_high")),
            "WA % (fold mean ± std)": mean_std(r["wa"], r["wa_std"]),
            "macro-F1 % (fold mean ± std)": mean_std(r["macro_f1"], r["macro_f1_std"]),
            **{f"F1 {c} %": pct(r["f1"].get(c)) for c in classes},
            "size MB": num(r["size_mb"], ".1f"),
            "latency p50 ms (one clip)": num(r["latency_p50_ms"], ".0f"),
            "latency measured on": r.get("speed_on") or "",
            "UA points/MB": ("n/a (weight-free, 0 MB)" if r["size_mb"] == 0 else
                             num(None if r["acc_per_mb"] is None else 100 * r["acc_per_mb"], ".3g")),
            "energy J/clip (estimate)": num(r["energy_j_per_clip"], ".3g"),
            "fidelity cos": num(r["fidelity_cosine"], ".4f"), "weights": r["weights"],
            "data": r["data"] + (f" ({r['synthetic_corpora']})" if r["data"] == "PARTLY SYNTHETIC" else ""),
            "flags": r["flags"] or "",
        })
    return pd.DataFrame(rows)


def fronts_display(t: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "group": r["pareto_group"], "model/recipe": plot_label(r), "size MB": num(r["size_mb"], ".1f"),
        "latency p50 ms": num(r["latency_p50_ms"], ".0f"), "latency measured on": r.get("speed_on") or "",
        "UA %": pct(r["ua"]), "size front": _front(r["front_size"]), "latency front": _front(r["front_latency"]),
        "3-D front": _front(r["front_3d"]),
    } for r in t.to_dict("records")])


def leakage_display(t: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "model/recipe": f"{r['model']}/{r['recipe']}" + (" (ft)" if r["mode"] == "finetune" else ""),
        "head": r["head"], "corpus": r["corpus"], "label map": r["label_map"], "random split": r["random_protocol"],
        "speaker-independent": r["speaker_independent_protocol"], "UA random %": pct(r["ua_random"]),
        "UA speaker-indep. %": pct(r["ua_speaker_independent"]),
        "leakage (points)": num(None if r["leakage"] is None else 100 * r["leakage"], "+.1f"),
        "random: shared/test speakers per fold": r["random_audit"],
        "speaker-indep.: shared/test speakers per fold": r["speaker_independent_audit"],
        "leakage pooled [95% CI] (points)": ci(r.get("leakage_pooled"), r.get("leakage_ci_low"),
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
        "ΔUA points [95% speaker CI]": ci(r["delta_ua"], r["delta_ci_low"], r["delta_ci_high"], spec="+.1f"),
        "p (bootstrap)": p_value(r["p_value"]), "McNemar p": p_value(r["mcnemar_p"]),
        "agreement %": pct(r["agreement"]), "verdict": r["verdict"],
        "MDD points": num(None if r.get("mdd") is None else 100 * r["mdd"], ".1f"),
        "ΔWA points": ci(r["delta_wa"], r["delta_wa_ci_low"], r["delta_wa_ci_high"], spec="+.1f"),
        "Δmacro-F1 points": ci(r["delta_macro_f1"], r["delta_macro_f1_ci_low"], r["delta_macro_f1_ci_high"],
                                spec="+.1f"),
        **{f"Δrecall {c}": ci(r.get(f"recall_change_{c}"), None, None, spec="+.1f") for c in classes},
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
        "gap (points)": num(None if r["gap"] is None else 100 * r["gap"], "+.1f"),
        **{f"recall {c[len('recall_'):]} %": pct(r[c]) for c in recall_cols},
        "marks": r["marks"], "run": r["run_id"],
    } for r in t.to_dict("records")])


# -- writing -------------------------------------------------------------------------------------


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
                            "would be overwritten); choose another folder or pass --force (force=True from Python)")
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
        for ext, data in files.items():
            written.append(atomic.write_bytes(out / "plots" / f"{stem}.{ext}", data, what="report file"))
    runs_csv = rep.runs.drop(columns=CSV_DROP).assign(
        train_corpora=lambda d: d["train_corpora"].map("+".join),
        test_corpora=lambda d: d["test_corpora"].map("+".join),
        train_only=lambda d: d["train_only"].map("+".join),
        audit=rep.runs["audit"].map(audit_text))
    for name, frame in (("runs.csv", runs_csv), ("leakage.csv", rep.leakage), ("cross_corpus.csv", rep.cross),
                        ("paired.csv", rep.paired), ("speakers.csv", rep.speakers)):
        written.append(atomic.write_bytes(out / name, frame.to_csv(index=False), what="report file"))
    sections = _sections(rep)
    written.append(atomic.write_bytes(out / "report.md", _markdown(rep, sections, images), what="report file"))
    written.append(atomic.write_bytes(out / "index.html", _html(rep, sections, images), what="report file"))
    rel = sorted(str(p.relative_to(out)) for p in written)
    for stale in sorted(set(old_files) - set(rel)):
        (out / stale).unlink(missing_ok=True)
    _write_marker(rep, out, rel, complete=True)
    rep.files = written
    return written


def _write_marker(rep: Report, out: Path, files: list[str], complete: bool) -> None:
    atomic.write_bytes(out / MARKER, json.dumps({"written_by": "serbench compare", "serbench": __version__,
                                                 "created": _now(), "store": rep.store, "complete": complete,
                                                 "files": sorted(files)}, indent=2), what="report file")


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
         "(not utterances: one speaker's clips are correlated); — for runs stored without it. UA points/MB: UA "
         "in points per MB of model (not applicable to weight-free models). Latency: p50 of one 8 s clip at "
         "batch 1, on the machine named. Energy: codecarbon's estimate per clip. Fidelity: centred cosine of the "
         "recipe's embeddings to fp32's on 8 synthetic probe clips, whatever data the run scored (serbench "
         "bench --probe-data measures it on real utterances).", runs_display(rep.runs), []),
        ("Compressed vs fp32", "Each compressed run against the fp32 run of the same serbench run invocation (same test "
         "utterances, folds and heads): difference new minus fp32 in points, with a paired bootstrap over "
         "test speakers (95% interval, two-sided p); McNemar's exact test on per-utterance correctness; "
         "agreement: share of utterances with the same predicted class. Verdict: worse or better when the "
         "whole interval is below or above 0 (by more than half the smallest step one utterance makes); "
         f"equivalent when it lies within ±{rep.margin:.1f} points (the margin, --margin); otherwise "
         "inconclusive (the data cannot tell). MDD: the minimum detectable ΔUA, the true difference this "
         "comparison would detect with 80 % power at the 95 % level, from the spread of the speaker "
         "bootstrap; an MDD beyond the margin means the test set is too small to judge.",
         paired_display(rep.paired) if len(rep.paired) else None, []),
        ("Pareto fronts", "Smaller size or latency and higher UA are better; a run is on the front when no other "
         "run of the same protocol and kind of data is at least as good on every axis and better on one. "
         "n/a: the run lacks that measurement (e.g. made with --no-measure), or a weight-free model on the "
         "size axis (it has no artefact to size: the size plot draws it as a dashed line at its UA). A group "
         "is plotted when it has at least two runs to trade; a model has one colour in every plot.",
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

