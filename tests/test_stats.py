"""Speaker-clustered intervals, paired differences, McNemar and per-speaker scores."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from serbench import metrics, stats

CLASSES = ["angry", "happy", "neutral", "sad"]


def _speakers(n_speakers=20, per=30, seed=0, spread=0.35):
    """Predictions whose accuracy differs strongly from speaker to speaker."""
    rng = np.random.default_rng(seed)
    y, p, spk = [], [], []
    for s in range(n_speakers):
        acc = np.clip(0.55 + spread * rng.normal(), 0.02, 0.98)
        t = rng.integers(0, 4, per)
        right = rng.random(per) < acc
        wrong = (t + rng.integers(1, 4, per)) % 4
        y += [CLASSES[i] for i in t]
        p += [CLASSES[i] for i in np.where(right, t, wrong)]
        spk += [f"spk{s:02d}"] * per
    return y, p, spk


def test_point_estimates_equal_the_metrics_module():
    y, p, spk = _speakers()
    ci = stats.cluster_bootstrap(y, p, spk, CLASSES, n_resamples=200)
    ref = metrics.scores(y, p, CLASSES)
    for key in stats.SCORES:
        assert ci[key]["value"] == pytest.approx(ref[key])
        assert ci[key]["low"] <= ci[key]["value"] <= ci[key]["high"]
    assert ci["clusters"] == 20


def test_clustered_interval_is_wider_than_the_utterance_bootstrap_when_speakers_differ():
    y, p, spk = _speakers()
    by_speaker = stats.cluster_bootstrap(y, p, spk, CLASSES, seed=1)
    by_utterance = stats.cluster_bootstrap(y, p, np.arange(len(y)), CLASSES, seed=1)
    width = lambda ci: ci["ua"]["high"] - ci["ua"]["low"]  # noqa: E731
    assert width(by_speaker) > 1.8 * width(by_utterance)


def test_interval_matches_the_binomial_closed_form():
    # n equal-size speakers, each entirely right or entirely wrong: a draw's WA is Binomial(n, q) / n
    n, right, per = 25, 15, 8
    y, p, spk = [], [], []
    for s in range(n):
        y += ["angry"] * per
        p += ["angry" if s < right else "sad"] * per
        spk += [s] * per
    ci = stats.cluster_bootstrap(y, p, spk, CLASSES, n_resamples=40_000, seed=3)
    q = right / n
    assert ci["wa"]["low"] == pytest.approx(binom.ppf(0.025, n, q) / n)
    assert ci["wa"]["high"] == pytest.approx(binom.ppf(0.975, n, q) / n)


def test_seeded_and_reproducible():
    y, p, spk = _speakers()
    assert stats.cluster_bootstrap(y, p, spk, CLASSES, seed=5) == stats.cluster_bootstrap(y, p, spk, CLASSES, seed=5)
    assert stats.cluster_bootstrap(y, p, spk, CLASSES, seed=5) != stats.cluster_bootstrap(y, p, spk, CLASSES, seed=6)


def test_paired_difference_of_identical_systems_is_zero_and_a_real_drop_is_found():
    y, p, spk = _speakers()
    same = stats.paired_bootstrap(y, p, p, spk, CLASSES)
    assert same["ua"]["delta"] == 0 and same["ua"]["low"] == 0 == same["ua"]["high"]
    assert same["ua"]["covers_zero"]
    worse = list(p)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(y), 120, replace=False):     # break 120 of 600 predictions
        worse[i] = CLASSES[(CLASSES.index(y[i]) + 1) % 4]
    drop = stats.paired_bootstrap(y, p, worse, spk, CLASSES)
    expected = metrics.ua(y, worse, CLASSES) - metrics.ua(y, p, CLASSES)
    assert drop["ua"]["delta"] == pytest.approx(expected)
    assert drop["ua"]["high"] < 0 and not drop["ua"]["covers_zero"] and drop["ua"]["p_value"] < 0.01


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs():
    y, p, spk = _speakers()
    other = list(p)
    for i in range(0, len(y), 7):
        other[i] = y[i]                                   # fixes some errors
    for i in range(3, len(y), 29):
        other[i] = CLASSES[(CLASSES.index(y[i]) + 2) % 4]  # and makes some
    res = stats.mcnemar(y, p, other)
    a = np.array(p) == np.array(y)
    b = np.array(other) == np.array(y)
    n01, n10 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert (res["ref_only_correct"], res["new_only_correct"]) == (n01, n10)
    assert res["p_value"] == pytest.approx(binomtest(min(n01, n10), n01 + n10, 0.5).pvalue)


def test_per_speaker_scores_and_agreement():
    y, p, spk = _speakers(n_speakers=5)
    table = stats.per_cluster(y, p, spk, CLASSES)
    assert list(table["n"]) == [30] * 5 and table["ua"].is_monotonic_increasing
    for _, row in table.iterrows():
        idx = [i for i, s in enumerate(spk) if s == row["speaker"]]
        assert row["ua"] == pytest.approx(metrics.ua([y[i] for i in idx], [p[i] for i in idx], CLASSES))
    assert stats.agreement(p, p) == 1.0
    assert stats.agreement(y, p) == pytest.approx(np.mean(np.array(y) == np.array(p)))
