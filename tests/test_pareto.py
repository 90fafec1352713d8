"""Pareto fronts on hand-made points: dominance, ties, duplicates, missing values, zero size."""
from __future__ import annotations

import math

import pytest

from serbench import pareto

SIZE_UA = {"size_mb": "min", "ua": "max"}


def _pts(*pairs):
    return [{"size_mb": s, "ua": u} for s, u in pairs]


def test_front_keeps_exactly_the_non_dominated_points():
    pts = _pts((10, 0.60), (5, 0.55), (20, 0.58), (1, 0.40), (5, 0.50), (30, 0.61))
    #          front       front       dominated   front       dominated   front
    assert pareto.front(pts, SIZE_UA) == [True, True, False, True, False, True]


def test_equal_on_one_axis_better_on_the_other_dominates():
    # same size, higher UA wins; same UA, smaller size wins
    assert pareto.front(_pts((5, 0.5), (5, 0.6)), SIZE_UA) == [False, True]
    assert pareto.front(_pts((5, 0.5), (4, 0.5)), SIZE_UA) == [False, True]


def test_duplicates_are_both_on_the_front():
    pts = _pts((3, 0.5), (3, 0.5), (4, 0.4))
    assert pareto.front(pts, SIZE_UA) == [True, True, False]


def test_missing_or_nan_objectives_are_left_out_and_do_not_dominate():
    pts = [{"size_mb": 1, "ua": None}, {"size_mb": 2, "ua": 0.5}, {"size_mb": math.nan, "ua": 0.9},
           {"ua": 0.99}]
    assert pareto.front(pts, SIZE_UA) == [False, True, False, False]
    assert not pareto.comparable(pts[0], SIZE_UA)
    assert pareto.comparable(pts[1], SIZE_UA)


def test_zero_size_is_an_ordinary_point():
    # a weight-free baseline at 0 MB is on the front; it knocks off heavier points that score less
    pts = _pts((0, 0.45), (1.5, 0.40), (10, 0.60))
    assert pareto.front(pts, SIZE_UA) == [True, False, True]


def test_three_objectives():
    objectives = {"size_mb": "min", "latency_ms": "min", "ua": "max"}
    pts = [
        {"size_mb": 10, "latency_ms": 50, "ua": 0.6},   # front: best UA
        {"size_mb": 3, "latency_ms": 80, "ua": 0.55},   # front: smallest
        {"size_mb": 5, "latency_ms": 20, "ua": 0.5},    # front: fastest
        {"size_mb": 5, "latency_ms": 30, "ua": 0.5},    # dominated by the previous one
        {"size_mb": 10, "latency_ms": 50, "ua": 0.59},  # dominated by the first
    ]
    assert pareto.front(pts, objectives) == [True, True, True, False, False]
    # on size x UA alone the fastest point is dominated by the smaller, better one
    assert pareto.front(pts, SIZE_UA) == [True, True, False, False, False]


def test_bad_objectives_are_rejected():
    with pytest.raises(ValueError, match="sense"):
        pareto.front(_pts((1, 0.5)), {"size_mb": "smallest"})
    with pytest.raises(ValueError, match="at least one"):
        pareto.front(_pts((1, 0.5)), {})


def test_empty_input():
    assert pareto.front([], SIZE_UA) == []
