"""`serbench compare` on the statistics a run stores (issue 13): speaker intervals in the runs
table, the paired compressed-vs-fp32 table, per-speaker results, the leakage gap's interval, and
error bars on the Pareto plots.

Stores are built with :func:`_runs.write_run`, which stores ``ci``/``per_speaker``/``paired``
computed with serbench.stats from the fixture's own predictions; every expectation below is
recomputed here from the stored predictions, not copied from the report.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from _runs import CLASSES, speaker_of, write_run

from serbench import fmt, plots, report, runtable, stats, views
from serbench.cli import main
from serbench.store import Store


def _build(path, ids=None, figures=False) -> report.Report:
    with runtable.open_store(path) as db:
        return report.build(db, ids, figures=figures)


def _pooled(path, rid):
    with runtable.open_store(path) as db:
        return db.predictions(rid)


def _ci_text(v, lo, hi, spec=".1f"):
    return f"{format(100 * v, spec)} [{format(100 * lo, spec)}, {format(100 * hi, spec)}]"


# -- runs table -----------------------------------------------------------------------------------


def test_runs_csv_and_tables_carry_the_pooled_ua_and_its_speaker_interval(hand, tmp_path):
    ids = hand.ids
    out = tmp_path / "rep"
    assert main(["compare", "--store", str(hand.path), "--out", str(out)]) == 0
    runs = pd.read_csv(out / "runs.csv").set_index("run_id")
    for k in "ABC":
        pred = _pooled(hand.path, ids[k])
        spk = [speaker_of(u, 4) for u in pred["utt_id"]]
        ci = stats.cluster_bootstrap(pred["y_true"], pred["y_pred"], spk, CLASSES, 200, seed=0)
        row = runs.loc[ids[k]]
        for score in ("ua", "wa", "macro_f1"):
            assert row[f"{score}_pooled"] == pytest.approx(ci[score]["value"])
            assert row[f"{score}_ci_low"] == pytest.approx(ci[score]["low"])
            assert row[f"{score}_ci_high"] == pytest.approx(ci[score]["high"])
        assert row["ua_ci_low"] <= row["ua_pooled"] <= row["ua_ci_high"]
        assert row["ci_clusters"] == 4 and row["ci_n_resamples"] == 200
        text = _ci_text(ci["ua"]["value"], ci["ua"]["low"], ci["ua"]["high"])
        for page in ((out / "report.md").read_text(), (out / "index.html").read_text()):
            assert text in page, (k, text)
    # runs stored before intervals existed: empty columns, "—" in the tables, no crash
    assert runs.loc[ids["D"], ["ua_ci_low", "ua_ci_high", "ua_pooled"]].isna().all()
    shown = report.runs_display(_build(hand.path).runs).set_index("run")
    assert shown.loc[ids["D"], "UA % pooled [95% speaker CI]"] == "—"
    assert shown.loc[ids["A"], "UA % (fold mean ± std)"] == "60.0 ± 0.0"  # the fold mean stays beside it
    for page in ((out / "report.md").read_text(), (out / "index.html").read_text()):
        assert "UA % pooled [95% speaker CI]" in page and "UA % (fold mean ± std)" in page


# -- compressed vs fp32 ---------------------------------------------------------------------------


def test_paired_csv_has_one_row_per_compressed_run_with_its_stored_test(hand, tmp_path):
    ids = hand.ids
    out = tmp_path / "rep"
    assert main(["compare", "--store", str(hand.path), "--out", str(out)]) == 0
    paired = pd.read_csv(out / "paired.csv").set_index("run_id")
    assert sorted(paired.index) == [ids["B"], ids["C"]]  # A is the reference; D..H store no paired test
    required = ["model", "recipe", "reference_run", "reference_recipe", "protocol", "label_map", "head",
                "delta_ua", "delta_ci_low", "delta_ci_high", "p_value", "mcnemar_p", "agreement", "verdict"]
    assert set(required) <= set(paired.columns)
    ref = _pooled(hand.path, ids["A"])
    for k in "BC":
        new = _pooled(hand.path, ids[k])
        both = ref.merge(new, on=["fold", "utt_id"], suffixes=("_a", "_b"))
        y, a, b = both["y_true_a"], both["y_pred_a"], both["y_pred_b"]
        boot = stats.paired_bootstrap(y, a, b, [speaker_of(u, 4) for u in both["utt_id"]], CLASSES, 200, seed=0)
        ra, rb = np.asarray(a) == np.asarray(y), np.asarray(b) == np.asarray(y)
        table = [[int(np.sum(ra & rb)), int(np.sum(ra & ~rb))], [int(np.sum(~ra & rb)), int(np.sum(~ra & ~rb))]]
        row = paired.loc[ids[k]]
        assert (row["model"], row["recipe"], row["reference_run"], row["reference_recipe"]) == (
            "big", {"B": "dynamic-int8", "C": "static-int8"}[k], ids["A"], "fp32")
        assert row["delta_ua"] == pytest.approx(boot["ua"]["delta"])
        assert row["delta_ua"] == pytest.approx({"B": -0.025, "C": -0.1}[k])  # mean(recalls) - 0.6
        assert (row["delta_ci_low"], row["delta_ci_high"]) == pytest.approx((boot["ua"]["low"], boot["ua"]["high"]))
        assert row["p_value"] == pytest.approx(boot["ua"]["p_value"])
        assert row["mcnemar_p"] == pytest.approx(sm_mcnemar(table, exact=True).pvalue)
        assert row["agreement"] == pytest.approx(np.mean(np.asarray(a) == np.asarray(b)))
        assert row["verdict"] == fmt.verdict(boot["ua"]["low"], boot["ua"]["high"])
        assert row["recall_change_neutral"] == pytest.approx(-0.1)
    assert paired.loc[ids["B"], "agreement"] == pytest.approx(39 / 40)  # one neutral clip of 40 changed class
    for page in ((out / "report.md").read_text(), (out / "index.html").read_text()):
        assert "Compressed vs fp32" in page and "ΔUA points [95% speaker CI]" in page
        assert paired.loc[ids["B"], "verdict"] in page and "McNemar p" in page


def test_verdict_reads_the_interval():
    inconclusive = "inconclusive vs fp32 at ±1.0 points"
    assert fmt.verdict(-0.1, 0.05) == inconclusive   # covers 0, reaches beyond the margin
    assert fmt.verdict(-0.188, 0.0) == inconclusive  # touching 0 covers it: not evidence of no loss
    assert fmt.verdict(-0.01, 0.0) == "equivalent to fp32 (within ±1.0 points)"
    assert fmt.verdict(-0.01, 0.01) == "equivalent to fp32 (within ±1.0 points)"  # the margin's edges are in
    assert fmt.verdict(-0.011, 0.005) == inconclusive
    assert fmt.verdict(-0.1, -0.01) == "worse than fp32"
    assert fmt.verdict(-0.015, -0.001) == "worse than fp32"   # a real difference, however small
    assert fmt.verdict(0.01, 0.2) == "better than fp32"
    assert fmt.verdict(-0.05, 0.05, margin=5.0).startswith("equivalent to fp32 (within ±5.0 points)")
    assert fmt.verdict(-0.05, 0.05, margin=4.9) == "inconclusive vs fp32 at ±4.9 points"
    assert fmt.verdict(None, None) == "—" and fmt.verdict(float("nan"), 0.1) == "—"
    assert fmt.verdict(None, None, covers_zero=True) == "inconclusive vs fp32"
    assert fmt.verdict(None, None, covers_zero=False) == "different from fp32"


def test_a_bound_within_half_an_utterance_step_of_zero_touches_it():
    """The sweep case: +0.9 [+0.0, +1.9] read "better" on a lower bound that was 0 but for one
    utterance of rounding. With the comparison's step (one utterance's change of UA) it does not."""
    step = 1 / (4 * 40)   # 4 classes, 40 utterances in the largest
    assert fmt.verdict(0.4 * step, 0.019, step=step) == "inconclusive vs fp32 at ±1.0 points"
    assert fmt.verdict(0.6 * step, 0.019, step=step) == "better than fp32"
    assert fmt.verdict(-0.019, -0.4 * step, step=step) == "inconclusive vs fp32 at ±1.0 points"
    assert fmt.verdict(-0.019, -0.6 * step, step=step) == "worse than fp32"
    assert fmt.verdict(-0.019, -0.4 * step) == "worse than fp32"   # no step given: strictly below 0


def test_a_difference_edge_never_prints_a_zero_that_hides_its_sign():
    assert fmt.ci(0.009, 0.00004, 0.019, spec="+.1f") == "+0.9 [+0.0040, +1.9]"
    assert fmt.ci(-0.009, -0.019, -0.00004, spec="+.1f") == "-0.9 [-1.9, -0.0040]"
    assert fmt.ci(0.0, 0.0, 0.0, spec="+.1f") == "+0.0 [+0.0, +0.0]"       # a true 0 stays 0
    assert fmt.ci(0.61, 0.58, 0.64) == "61.0 [58.0, 64.0]"                   # not a difference: as before


def test_paired_bootstrap_reports_the_step_and_minimum_detectable_difference():
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c", "d"]
    y = rng.choice(classes, 400)
    spk = np.repeat(np.arange(20), 20)
    flipped = y.copy()
    flipped[rng.random(400) < 0.1] = "a"
    small, large = (stats.paired_bootstrap(y[:n], y[:n], flipped[:n], spk[:n], classes) for n in (100, 400))
    counts = {c: int(np.sum(y[:400] == c)) for c in classes}
    assert large["ua"]["step"] == pytest.approx(1 / (4 * max(counts.values())))
    assert large["wa"]["step"] == pytest.approx(1 / 400) and large["utterances"] == 400
    for r in (small, large):   # mdd = (z_0.975 + z_0.8) * bootstrap sd of the difference
        assert r["ua"]["mdd"] == pytest.approx((1.959964 + 0.841621) * r["ua"]["sd"], rel=1e-5)
    assert small["ua"]["mdd"] > large["ua"]["mdd"] > 0   # 5 speakers resolve less than 20
    same = stats.paired_bootstrap(y, y, y, spk, classes)
    assert same["ua"]["mdd"] == same["ua"]["step"] and fmt.paired_verdict({**same, "reference_recipe": "fp32"}) == \
        "equivalent to fp32 (within ±1.0 points)"


def test_an_inconclusive_verdict_says_what_the_test_set_cannot_resolve():
    paired = {"reference_recipe": "fp32", "utterances": 16, "clusters": 2,
              "ua": {"delta": -0.062, "low": -0.188, "high": 0.0, "mdd": 0.14, "step": 1 / 16}}
    assert fmt.paired_verdict(paired) == "inconclusive vs fp32 at ±1.0 points"
    assert fmt.resolution(paired) == ("16 test utterances from 2 speakers cannot resolve ±1.0 points "
                                      "(minimum detectable ΔUA 14.0 points, 80 % power; one utterance moves "
                                      "UA by 6.2 points)")
    fine = {**paired, "ua": {**paired["ua"], "step": 0.005}}
    assert fmt.resolution(fine).endswith("(minimum detectable ΔUA 14.0 points, 80 % power)")
    assert fmt.resolution(paired, margin=20.0) is None   # equivalent at ±20: nothing to explain
    assert fmt.resolution({**paired, "ua": {**paired["ua"], "mdd": None}}) is None   # stored before the MDD


def test_a_clear_regression_is_reported_worse_and_a_copy_equivalent(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as db:
        # 3 folds of 40: 30 utterances per class, so one utterance moves UA by 0.8 points, inside the margin
        ref = write_run(db, "big", "fp32", "loso", [0.8] * 4, speakers=5, folds=3)
        bad = write_run(db, "big", "static-int8", "loso", [0.2] * 4, speakers=5, reference=ref, folds=3)
        same = write_run(db, "big", "dynamic-int8", "loso", [0.8] * 4, speakers=5, reference=ref, folds=3)
        older = write_run(db, "big", "fp16", "loso", [0.7] * 4)  # stored before paired tests: no row
    rep = _build(path)
    p = rep.paired.set_index("run_id")
    assert sorted(p.index) == [bad, same] and older in set(rep.runs["run_id"])
    assert p.loc[bad, "delta_ci_high"] < 0 and p.loc[bad, "verdict"] == "worse than fp32"
    assert p.loc[bad, "delta_ua"] == pytest.approx(0.2 - 0.8)
    assert p.loc[same, "delta_ua"] == 0 and p.loc[same, "verdict"] == "equivalent to fp32 (within ±1.0 points)"
    assert p.loc[same, "agreement"] == 1.0 and p.loc[same, "mcnemar_p"] == 1.0
    shown = report.paired_display(rep.paired).set_index("run")
    lo, hi = p.loc[bad, "delta_ci_low"], p.loc[bad, "delta_ci_high"]
    assert shown.loc[bad, "ΔUA points [95% speaker CI]"] == f"{-60.0:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


# -- per speaker ----------------------------------------------------------------------------------


def test_speakers_csv_and_the_worst_speakers_are_named(hand, tmp_path):
    ids = hand.ids
    out = tmp_path / "rep"
    assert main(["compare", "--store", str(hand.path), "--out", str(out)]) == 0
    sp = pd.read_csv(out / "speakers.csv")
    assert ["run_id", "model", "recipe", "protocol", "speaker", "n", "ua", "wa", "macro_f1"] == [
        c for c in sp.columns if c in ("run_id", "model", "recipe", "protocol", "speaker", "n", "ua", "wa", "macro_f1")]
    assert sorted(set(sp["run_id"])) == sorted(ids[k] for k in "ABC")  # the others store no per-speaker UA
    md, html = (out / "report.md").read_text(), (out / "index.html").read_text()
    for k in "ABC":
        pred = _pooled(hand.path, ids[k])
        expect = stats.per_cluster(pred["y_true"], pred["y_pred"], [speaker_of(u, 4) for u in pred["utt_id"]],
                                   CLASSES)
        got = sp[sp["run_id"] == ids[k]].reset_index(drop=True)
        assert got["speaker"].tolist() == expect["speaker"].tolist()  # worst UA first
        assert got["ua"].tolist() == pytest.approx(expect["ua"].tolist())
        assert got["n"].tolist() == expect["n"].tolist() and got["n"].sum() == 80  # 40 clips x 2 folds
        worst = "; ".join(f"{s} {100 * u:.1f} (n {n})" for s, u, n in
                          expect[["speaker", "ua", "n"]].head(report.WORST).itertuples(index=False))
        assert worst in md and worst in html
    # the strip plot: one per protocol-and-data group with per-speaker results
    assert (out / "plots" / "speakers-loso-iemocap-4class-real.png").stat().st_size > 1000
    assert "UA per test speaker, loso · iemocap-4class · real" in html


def test_speaker_strip_plot_has_one_row_per_run_and_every_speaker():
    rep_runs = pd.DataFrame({"run": ["r1"] * 3 + ["r2"] * 2, "speaker": ["a", "b", "c", "a", "b"],
                             "ua": [0.1, 0.5, 0.9, 0.4, 0.6]})
    fig = plots.speaker_strip(rep_runs, "t", order=["r1", "r2"])
    ax = fig.axes[0]
    offsets = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
    assert sorted(offsets[:, 0].round(6)) == pytest.approx([10, 40, 50, 60, 90])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["r1", "r2"]
    assert {t.get_text() for t in ax.texts} == {"a"}  # the worst speaker of each run (a in both)


# -- leakage --------------------------------------------------------------------------------------


def _aligned(path, random_run, si_run) -> pd.DataFrame:
    r, s = (_pooled(path, rid).drop_duplicates("utt_id") for rid in (random_run, si_run))
    return r.merge(s, on="utt_id", suffixes=("_r", "_s"))


def test_leakage_gap_gets_a_paired_interval_from_both_runs_predictions(hand, tmp_path):
    ids = hand.ids
    leak = _build(hand.path).leakage.set_index("model")
    # E (random split) and A (LOSO) predicted the same 40 utterances (in each of 2 identical folds);
    # A stored each prediction's speaker, E (an older run) did not: A's speakers are used. The
    # synthetic pair H (random) and G (LOSO) stored no speakers at all: utterances are resampled.
    real, synth = _aligned(hand.path, ids["E"], ids["A"]), _aligned(hand.path, ids["H"], ids["G"])
    assert real["speaker_r"].isna().all() and real["speaker_s"].notna().all()
    assert synth["speaker_r"].isna().all() and synth["speaker_s"].isna().all()
    cases = {"big": (real, "speaker_s", 200, "speaker"),  # A's own interval used 200 draws
             "tiny": (synth, "utt_id", stats.N_RESAMPLES, views.UTTERANCE_UNIT)}
    for model, (both, clusters, n, unit) in cases.items():
        expect = stats.paired_bootstrap(both["y_true_r"], both["y_pred_s"], both["y_pred_r"], both[clusters],
                                        CLASSES, n, seed=0)["ua"]
        row = leak.loc[model]
        assert row["leakage_ci_unit"] == unit and row["leakage_ci_utterances"] == 40
        assert row["leakage_pooled"] == pytest.approx(0.1) == pytest.approx(expect["delta"])
        assert (row["leakage_ci_low"], row["leakage_ci_high"]) == pytest.approx((expect["low"], expect["high"]))
        assert "40 repeated prediction(s)" in row["leakage_ci_note"]
    out = tmp_path / "rep"
    report.write(_build(hand.path), out)
    csv = pd.read_csv(out / "leakage.csv")
    assert {"leakage_ci_low", "leakage_ci_high", "leakage_ci_unit"} <= set(csv.columns)
    row = leak.loc["big"]
    text = f"+10.0 [{100 * row['leakage_ci_low']:+.1f}, {100 * row['leakage_ci_high']:+.1f}]"
    for page in ((out / "report.md").read_text(), (out / "index.html").read_text()):
        assert text in page and "leakage pooled [95% CI] (points)" in page
    # without the store (the table alone) the interval columns are there and empty
    assert views.leakage_table(_build(hand.path).runs)["leakage_ci_low"].isna().all()


def _frame(utts, y_true, y_pred, speakers=None) -> pd.DataFrame:
    f = pd.DataFrame({"fold": 0, "utt_id": utts, "y_true": y_true, "y_pred": y_pred})
    return f if speakers is None else f.assign(speaker=speakers)


def test_leakage_interval_is_wider_with_speakers_and_uses_the_shared_utterances():
    rng = np.random.default_rng(0)
    n_spk, per = 12, 30
    utts = [f"c/u{i}" for i in range(n_spk * per)]
    spk = np.repeat([f"c/S{k}" for k in range(n_spk)], per)
    y = rng.choice(CLASSES, size=len(utts))
    # strong speaker effect: the random split is right on every clip of half the speakers, the
    # speaker-independent run on a random 40 % of every speaker's clips
    good = np.isin(spk, [f"c/S{k}" for k in range(0, n_spk, 2)])
    wrong = np.array([CLASSES[(CLASSES.index(c) + 1) % 4] for c in y])
    rand = np.where(good | (rng.random(len(y)) < 0.4), y, wrong)
    si = np.where(rng.random(len(y)) < 0.4, y, wrong)
    by_spk = views.leakage_interval(_frame(utts, y, rand, spk), _frame(utts, y, si, spk), CLASSES)
    by_utt = views.leakage_interval(_frame(utts, y, rand), _frame(utts, y, si), CLASSES)
    assert by_spk["leakage_ci_unit"] == "speaker" and by_utt["leakage_ci_unit"] == views.UTTERANCE_UNIT
    assert by_spk["leakage_pooled"] == pytest.approx(by_utt["leakage_pooled"])
    assert (by_spk["leakage_ci_high"] - by_spk["leakage_ci_low"]) > 1.5 * (by_utt["leakage_ci_high"]
                                                                          - by_utt["leakage_ci_low"])
    assert by_spk["leakage_ci_note"] == ""
    # different utterance sets: the intersection, said so
    part = views.leakage_interval(_frame(utts, y, rand, spk), _frame(utts[:300], y[:300], si[:300], spk[:300]),
                                   CLASSES)
    assert part["leakage_ci_utterances"] == 300
    assert "on the 300 utterances both runs predicted (random split: 360, speaker-independent: 300)" in part[
        "leakage_ci_note"]
    none = views.leakage_interval(_frame(["x/1"], ["sad"], ["sad"]), _frame(["x/2"], ["sad"], ["sad"]), CLASSES)
    assert none["leakage_ci_low"] is None and none["leakage_ci_utterances"] == 0


# -- plots and older stores -----------------------------------------------------------------------


def test_pareto_plots_have_ua_error_bars_and_labels_inside_the_axes(hand):
    rep = _build(hand.path, figures=True)
    t = rep.runs.set_index("run_id")
    _, fig = rep.figures["pareto-size-loso-iemocap-4class-real"]
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1
    segments = bars[0].lines[2][0].get_segments()
    got = sorted((round(s[0][1], 6), round(s[1][1], 6)) for s in segments)
    want = sorted((round(100 * t.loc[hand.ids[k], "ua_ci_low"], 6), round(100 * t.loc[hand.ids[k], "ua_ci_high"], 6))
                  for k in "ABC")  # A, B, C have intervals; D (older) has none
    assert got == want
    for stem, (_, f) in rep.figures.items():
        if stem.startswith("pareto-"):
            _assert_labels_inside(f)


def test_the_report_plots_what_can_be_traded_and_colours_each_model_once(hand):
    rep = _build(hand.path, figures=True)
    t = rep.runs
    assert not any(s.startswith("pareto-3d") for s in rep.figures)
    scatter = lambda fig: next(c for c in fig.axes[0].collections if isinstance(c, PathCollection))  # noqa: E731
    for stem, (title, fig) in rep.figures.items():   # every Pareto plot has at least two points to trade
        if stem.startswith("pareto-"):
            assert len(scatter(fig).get_offsets()) >= 2, stem
    plotted = {s for s in rep.figures if s.startswith("pareto-size-")}
    for group, df in t.groupby("pareto_group"):
        sized = df[df["front_size"].notna()]
        assert (f"pareto-size-{fmt.slug(group)}" in plotted) == (len(sized) >= 2), group
    # the weight-free egemaps run (0 MB) is a dashed line at its UA, not a point at 0 MB
    d = t.set_index("run_id").loc[hand.ids["D"]]
    _, fig = rep.figures["pareto-size-loso-iemocap-4class-real"]
    lines = [ln for ln in fig.axes[0].get_lines() if "weight-free" in ln.get_label()]
    assert len(lines) == 1 and lines[0].get_ydata()[0] == pytest.approx(100 * d["ua"])
    assert all(x > 0 for x, _ in scatter(fig).get_offsets())
    colours = plots.model_colours(t["model"])
    assert set(colours) == set(t["model"]) and len(set(colours.values())) == len(colours)
    assert plots.model_colours(list(reversed(list(t["model"])))) == colours   # not order-dependent


def _assert_labels_inside(fig):
    canvas = FigureCanvasAgg(fig)  # the report renders with Agg too
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    frame = ax.get_window_extent(renderer)
    for text in ax.texts:
        box = text.get_window_extent(renderer)
        assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1, (text.get_text(), box, frame)
        assert frame.y0 - 1 <= box.y0 and box.y1 <= frame.y1 + 1, (text.get_text(), box, frame)


def test_long_labels_at_the_right_edge_stay_inside_the_plot():
    pts = pd.DataFrame({"size_mb": [1.0, 50.0, 95.0, 100.0], "ua": [0.4, 0.5, 0.55, 0.6],
                        "model": ["a", "b", "c", "c"], "recipe": ["fp32", "fp32", "static-int8", "fp32"],
                        "front": [True, True, True, True],
                        "label": ["a/fp32", "b/fp32 [RANDOM-INIT]", "c-with-a-long-name/static-int8 [RANDOM-INIT]",
                                  "c-with-a-long-name/fp32 [RANDOM-INIT]"]})
    _assert_labels_inside(plots.pareto_2d(pts, "size_mb", "MB", "front", "t"))


def test_a_store_of_older_runs_reports_without_the_new_views(tmp_path):
    path = tmp_path / "old.sqlite"
    with Store(path) as db:
        write_run(db, "big", "fp32", "loso", [0.6] * 4)
        write_run(db, "big", "dynamic-int8", "loso", [0.5] * 4)
        write_run(db, "big", "fp32", "kfold-random", [0.7] * 4, shared=8)
        rid = write_run(db, "big", "fp16", "loso", [0.5] * 4)
        db._conn.execute("UPDATE runs SET summary = ? WHERE id = ?",  # malformed statistics: ignored
                         ('{"ua": {"mean": 0.5}, "ci": "?", "per_speaker": [1], "paired": []}', rid))
    out = tmp_path / "rep"
    assert main(["compare", "--store", str(path), "--out", str(out)]) == 0
    for name in ("paired.csv", "speakers.csv"):
        lines = (out / name).read_text().splitlines()
        assert len(lines) == 1 and lines[0].startswith("run_id,model,recipe,"), (name, lines)
    runs = pd.read_csv(out / "runs.csv")
    assert runs["ua_ci_low"].isna().all() and runs["ua_ci_high"].isna().all()
    leak = pd.read_csv(out / "leakage.csv")
    assert len(leak) == 1 and leak.loc[0, "leakage_ci_unit"] == views.UTTERANCE_UNIT  # from the predictions
    html = (out / "index.html").read_text()
    assert "Compressed vs fp32" in html and "No runs for this view" in html


def test_identical_predictions_on_a_few_utterances_are_not_proof_of_equivalence():
    """Six utterances that fp32 and the compressed model classify alike: ΔUA is exactly 0, yet one
    utterance moves UA by far more than the margin, so the test set resolves nothing."""
    y = ["a", "b", "a", "b", "a", "b"]
    res = stats.paired_bootstrap(y, y, y, [0, 0, 1, 1, 2, 2], ["a", "b"])
    paired = {**res, "reference_recipe": "fp32"}
    assert res["ua"]["low"] == res["ua"]["high"] == 0 and res["ua"]["step"] == pytest.approx(1 / 6)
    assert res["ua"]["mdd"] == pytest.approx(1 / 6)   # floored at one utterance
    assert fmt.paired_verdict(paired) == "inconclusive vs fp32 at ±1.0 points"
    assert "one utterance moves UA by 16.7 points" in fmt.resolution(paired)
    assert fmt.paired_verdict(paired, margin=20.0) == "equivalent to fp32 (within ±20.0 points)"
