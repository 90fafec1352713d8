"""Figures for ``serbench compare``: Pareto fronts (with speaker-bootstrap error bars), confusion
heatmaps, cross-corpus recall, per-speaker UA.

Every function returns :class:`matplotlib.figure.Figure` objects built without pyplot, so nothing
depends on (or changes) a global backend or figure registry: a report can be made in a test, a
worker thread or a headless CI box, and :func:`render` turns a figure into PNG and SVG bytes with
Agg/SVG. Callers pass plain tables (pandas DataFrames) with a ``label`` column; the plots never
look at the results store.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # only matters if pyplot is imported elsewhere: never open a window

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from serbench.fmt import pct, plot_label, slug  # noqa: E402

FRONT_COLOUR = "#c0392b"
RECALL_TITLE = "Per-class recall on the target corpus"
CI_COLOUR = "#555555"


def report_figures(runs: pd.DataFrame, cross: pd.DataFrame,
                   speakers: pd.DataFrame | None = None) -> dict[str, tuple[str, Figure]]:
    """Every figure of a report, ``{file stem: (caption, figure)}``, from its run table (with
    fronts, :func:`serbench.runtable.add_fronts`), cross-corpus table and per-speaker table
    (:func:`serbench.views.speakers_table`): per protocol-and-data group the size and latency
    fronts (each only over the runs that have its numbers, and only where there are at least two:
    one point trades nothing; UA error bars where the run has a speaker interval; a weight-free
    model as a reference line on the size plot, not a point at 0 MB), the target corpus's per-class
    recall, per group a strip plot of UA per test speaker per run, and one confusion heatmap per run.
    A model has one colour in every figure. No 3-D plot: on a page it hides more than it shows,
    and the size and latency plots carry the same fronts."""
    from serbench import metrics

    figs: dict[str, tuple[str, Figure]] = {}
    palette = model_colours(runs["model"]) if len(runs) else {}
    # latency is drawn per machine as well (``speed_group``: CPU and kernel ISA), size per group
    for name, x, x_label, col, by in (("size", "size_mb", "model size (MB)", "front_size", "pareto_group"),
                                      ("latency", "latency_p50_ms", "latency p50 (ms, one 8 s clip)", "front_latency",
                                       "speed_group")):
        for group, df in runs.groupby(by, sort=False):
            # the group name carries the kind of data (SYNTHETIC); point labels carry RANDOM-INIT
            have = df[df[col].notna()]
            if len(have) >= MIN_POINTS:
                have = have.assign(label=[plot_label(r, data_in_title=True) for r in have.to_dict("records")])
                free = df[df["size_mb"] == 0] if name == "size" else df.iloc[:0]
                free = free.assign(label=[plot_label(r, data_in_title=True) for r in free.to_dict("records")])
                title = f"{name.capitalize()} x UA, {group}"
                figs[f"pareto-{name}-{slug(group)}"] = (title, pareto_2d(have, x, x_label, col, title, palette,
                                                                         references=free))
    long = [{"label": f"{r['model']}/{r['recipe']} -> {r['target']}" + (f" [{r['marks']}]" if r["marks"] else ""),
             "class": c[len("recall_"):], "recall": r[c]}
            for r in cross.drop_duplicates("run_id").to_dict("records")
            for c in cross.columns if c.startswith("recall_") and r[c] is not None and not pd.isna(r[c])]
    if long:
        figs["cross-corpus-recall"] = (RECALL_TITLE, recall_bars(pd.DataFrame(long), RECALL_TITLE))
    if speakers is not None and len(speakers):
        for group, df in runs.groupby("pareto_group", sort=False):
            per = speakers[speakers["run_id"].isin(df["run_id"])]
            if per.empty:
                continue
            names = {r["run_id"]: f"{r['run_id']}: {plot_label(r, data_in_title=True)}" for r in df.to_dict("records")}
            title = f"UA per test speaker, {group}"
            figs[f"speakers-{slug(group)}"] = (title, speaker_strip(
                per.assign(run=per["run_id"].map(names)), title, order=[names[i] for i in df["run_id"]
                                                                        if i in set(per["run_id"])]))
    for r in runs.to_dict("records"):
        if r["confusion"]:
            title = f"run {r['run_id']}: {plot_label(r)}\n{r['protocol']}, {r['label_map']}, UA {pct(r['ua'])}%"
            figs[f"confusion-run{r['run_id']}"] = (title.replace("\n", "; "), confusion(
                metrics.normalised_confusion(r["confusion"]), r["classes"], title))
    return figs


def render(fig: Figure) -> dict[str, bytes]:
    """PNG and SVG bytes of ``fig``; metadata that changes on every call (dates, software
    versions) is left out so re-rendering the same data gives the same files."""
    out = {}
    for fmt, meta in (("png", {"Software": None}), ("svg", {"Date": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight", metadata=meta)
        out[fmt] = buf.getvalue()
    return out


MIN_POINTS = 2   # a front of one point trades nothing: such a group is in the tables, not plotted


def model_colours(models) -> dict[str, tuple]:
    """One colour per model name for the whole report (sorted names, so the same models get the
    same colours in every report)."""
    names = sorted(set(models))
    return dict(zip(names, sns.color_palette("colorblind" if len(names) <= 10 else "husl", len(names))))


def pareto_2d(points: pd.DataFrame, x: str, x_label: str, on_front: str, title: str,
              palette: dict | None = None, references: pd.DataFrame | None = None) -> Figure:
    """Scatter of UA (%) against a cost ``x`` (minimised), the front drawn as a step line.

    ``points`` needs ``x``, ``ua`` (fraction), ``model``, ``recipe``, ``label`` and the boolean
    column ``on_front``; ``palette``: model -> colour (:func:`model_colours`). ``references``
    (weight-free runs, which have no size) are drawn as dashed horizontal lines at their UA. Zero
    costs stay visible: the axis goes symlog instead of log when a zero is present.
    """
    fig = Figure(figsize=(7.5, 5))
    ax = fig.add_subplot()
    df = points.assign(ua_pct=100 * points["ua"].astype(float), _x=points[x].astype(float))
    _error_bars(ax, df)
    sns.scatterplot(data=df, x="_x", y="ua_pct", hue="model", style="recipe", s=90, ax=ax, zorder=3,
                    palette=palette or None)
    for r in ([] if references is None else references.to_dict("records")):
        ax.axhline(100 * float(r["ua"]), ls="--", lw=1, zorder=1,
                   color=(palette or {}).get(r["model"], CI_COLOUR),
                   label=f"{r['label']} (weight-free, no size): UA {100 * float(r['ua']):.1f} %")
    front = df[df[on_front].astype(bool)].sort_values(["_x", "ua_pct"])
    if len(front):
        ax.step(front["_x"], front["ua_pct"], where="post", color=FRONT_COLOUR, lw=1.5, zorder=2,
                label="Pareto front")
        ax.scatter(front["_x"], front["ua_pct"], s=220, facecolors="none", edgecolors=FRONT_COLOUR,
                   lw=1.5, zorder=4)
    _cost_scale(ax, df["_x"].to_numpy())
    if len(front):  # carry the last step to the right edge, so the dominated region is visible
        right = ax.get_xlim()[1]
        ax.plot([front["_x"].iloc[-1], right], [front["ua_pct"].iloc[-1]] * 2, color=FRONT_COLOUR, lw=1.5, zorder=2)
        ax.set_xlim(right=right)
    ax.set_xlabel(x_label)
    ax.set_ylabel("UA (%, mean over folds)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    _place_labels(ax, df["_x"].to_numpy(), df["ua_pct"].to_numpy(), df["label"].tolist())
    return fig


def _error_bars(ax, df: pd.DataFrame) -> None:
    """The pooled UA's 95 % speaker-bootstrap interval of each run that has one, as a vertical bar
    at the run's cost (drawn from the interval's ends, so it stays honest when the fold mean the
    point shows differs a little from the pooled UA)."""
    if not {"ua_ci_low", "ua_ci_high"} <= set(df.columns):
        return
    low = pd.to_numeric(df["ua_ci_low"], errors="coerce") * 100
    high = pd.to_numeric(df["ua_ci_high"], errors="coerce") * 100
    ok = low.notna() & high.notna() & np.isfinite(df["_x"])
    if not ok.any():
        return
    mid = (low[ok] + high[ok]) / 2
    ax.errorbar(df.loc[ok, "_x"], mid, yerr=[mid - low[ok], high[ok] - mid], fmt="none", ecolor=CI_COLOUR,
                elinewidth=1.0, capsize=3, alpha=0.8, zorder=2.5, label="UA pooled, 95% speaker CI")


def confusion(matrix: np.ndarray, classes: Sequence[str], title: str) -> Figure:
    """Row-normalised confusion heatmap (each row is a true class; the diagonal is its recall),
    laid out like the reference paper's Fig. 1."""
    fig = Figure(figsize=(4.6, 3.9))
    ax = fig.add_subplot()
    sns.heatmap(pd.DataFrame(matrix, index=list(classes), columns=list(classes)), annot=True, fmt=".0%",
                cmap="Blues", vmin=0, vmax=1, square=True, cbar=True, ax=ax, annot_kws={"fontsize": 8})
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=8.5)
    fig.tight_layout()
    return fig


def recall_bars(long: pd.DataFrame, title: str) -> Figure:
    """Per-class recall on the target corpus; ``long`` has ``label``, ``class`` and ``recall``."""
    fig = Figure(figsize=(7.5, 4))
    ax = fig.add_subplot()
    sns.barplot(data=long.assign(recall_pct=100 * long["recall"].astype(float)), x="class", y="recall_pct",
                hue="label", ax=ax)
    ax.set_ylabel("recall on target (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _place_labels(ax, xs, ys, labels: list[str], fontsize: float = 7.5) -> None:
    """Annotate points, moving each label above or below its point, step by step, until it clears
    the labels already placed (greedy; text width estimated from its length), so that close points
    (an fp32 model and its int8 copy) stay readable. A label is put to the right of its point, or
    to the left where it would run past the plot's right edge, and never beyond the top or bottom
    edge when a place inside is free. Call it after the layout is fixed (pixel positions)."""
    ax.autoscale_view()
    px_per_pt = ax.figure.dpi / 72
    height = 1.35 * fontsize
    frame = ax.get_window_extent()
    marker = 5 * px_per_pt  # labels also keep clear of the other points' markers
    points = [ax.transData.transform((x, y)) for x, y in zip(xs, ys)]
    placed: list[tuple[float, float, float, float]] = [(x - marker, y - marker, x + marker, y + marker)
                                                       for x, y in points]
    order = sorted(range(len(labels)), key=lambda i: (-ys[i], xs[i]))
    for i in order:
        px, py = points[i]
        width = 0.58 * fontsize * len(labels[i])
        right_fits = px + (6 + width) * px_per_pt <= frame.x1
        sides = [1, -1] if right_fits or px - (6 + width) * px_per_pt < frame.x0 else [-1, 1]
        candidates = [(side, dy) for side in sides
                      for dy in [4.0] + [sign * (4.0 + k * height) for k in range(1, 6) for sign in (1, -1)]]

        def box_of(side, dy, px=px, py=py, width=width):
            x0 = px + 6 * px_per_pt if side > 0 else px - (6 + width) * px_per_pt
            return (x0, py + dy * px_per_pt, x0 + width * px_per_pt, py + (dy + height) * px_per_pt)

        def free(box):
            return not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed)

        def inside(box):
            return frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1

        side, dy = next((c for c in candidates if free(box_of(*c)) and inside(box_of(*c))),
                        next((c for c in candidates if free(box_of(*c))), candidates[0]))
        placed.append(box_of(side, dy))
        ax.annotate(labels[i], (xs[i], ys[i]), textcoords="offset points", xytext=(6 * side, dy),
                    ha="left" if side > 0 else "right", fontsize=fontsize, annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey"} if abs(dy) > height else None)


def speaker_strip(long: pd.DataFrame, title: str, order: list[str] | None = None) -> Figure:
    """UA (%) of every test speaker, one row per run (seaborn stripplot), the run's worst speaker
    named beside its point. ``long`` has ``run`` (row label), ``speaker`` and ``ua`` (fraction)."""
    order = order or list(dict.fromkeys(long["run"]))
    fig = Figure(figsize=(7.5, 1.4 + 0.5 * len(order)))
    ax = fig.add_subplot()
    df = long.assign(ua_pct=100 * pd.to_numeric(long["ua"], errors="coerce")).dropna(subset=["ua_pct"])
    sns.stripplot(data=df, x="ua_pct", y="run", order=order, ax=ax, jitter=0.18, size=5, alpha=0.75,
                  color="#2c7fb8", orient="h")
    for row, run in enumerate(order):
        s = df[df["run"] == run]
        if len(s):
            ax.plot([s["ua_pct"].median()] * 2, [row - 0.3, row + 0.3], color="black", lw=1.2)
            worst = s.loc[s["ua_pct"].idxmin()]
            tied = int((s["ua_pct"] == worst["ua_pct"]).sum()) - 1
            ax.annotate(str(worst["speaker"]) + (f" (+{tied} tied)" if tied else ""), (worst["ua_pct"], row), textcoords="offset points", xytext=(0, -11),
                        ha="center", va="top", fontsize=6.5, color="#333333",
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
    ax.set_xlim(-2, 102)
    ax.set_xlabel("UA per test speaker (%); bar: median speaker; named: worst speaker")
    ax.set_ylabel("")
    ax.tick_params(axis="y", labelsize=7.5)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _cost_scale(ax, values: np.ndarray) -> None:
    """Log axis for costs that span decades; symlog when a zero (weight-free) is among them."""
    ax.autoscale_view()  # limits with margins from the data, before any is fixed
    values = values[np.isfinite(values)]
    positive = values[values > 0]
    if len(positive) < 2 or positive.max() / positive.min() < 20:
        top = float(values.max()) if len(values) else 0.0
        left = min(0.0, float(values.min())) if len(values) else 0.0
        ax.set_xlim(left=left, right=top * 1.08 if top > 0 else 1.0)
        return
    if (values <= 0).any():
        ax.set_xscale("symlog", linthresh=float(positive.min()))
    else:
        ax.set_xscale("log")
