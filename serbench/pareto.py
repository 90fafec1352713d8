"""Pareto fronts: which (model, recipe) points no other point beats on every objective at once.

Plain data in and out, no plotting and no store, so the rule that decides what a report calls
"on the front" is small enough to test on hand-made points.

Conventions, and why:

* ``a`` dominates ``b`` when ``a`` is at least as good on every objective and strictly better on
  one. Two identical points therefore do not dominate each other: duplicates (the same artefact
  run twice, two recipes that compile to the same model) are *both* on the front, rather than one
  of them being dropped by an arbitrary tie-break.
* A point missing any objective (``None`` or NaN: a run made with ``--no-measure`` has no latency)
  cannot be compared, so it is never on that front and never knocks another point off it. The
  caller can see it was left out because its mask entry is ``False`` and :func:`comparable` says so.
* Zero is an ordinary value: a weight-free baseline (eGeMAPS: 0 MB) is on the size front when no
  model both weighs nothing and scores higher, which is the honest reading.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

MIN, MAX = "min", "max"


def comparable(point: Mapping, objectives: Mapping[str, str]) -> bool:
    """Whether ``point`` has a finite number for every objective."""
    for key in objectives:
        value = point.get(key)
        if value is None:
            return False
        try:
            if not math.isfinite(float(value)):
                return False
        except (TypeError, ValueError):
            return False
    return True


def dominates(a: Mapping, b: Mapping, objectives: Mapping[str, str]) -> bool:
    """``a`` is no worse than ``b`` on every objective and better on at least one."""
    better = False
    for key, sense in objectives.items():
        x, y = float(a[key]), float(b[key])
        if sense == MIN:
            x, y = -x, -y
        elif sense != MAX:
            raise ValueError(f"objective {key!r}: sense must be {MIN!r} or {MAX!r}, not {sense!r}")
        if x < y:
            return False
        better = better or x > y
    return better


def front(points: Sequence[Mapping], objectives: Mapping[str, str]) -> list[bool]:
    """For each point, whether it is on the Pareto front of ``objectives``.

    ``objectives`` maps a key of the points to ``"min"`` or ``"max"``, e.g.
    ``{"size_mb": "min", "ua": "max"}``. Points without a finite value for every objective are
    ``False`` and are ignored when judging the others. O(n^2), which is nothing for the tens of
    runs a report holds.
    """
    if not objectives:
        raise ValueError("front needs at least one objective")
    for key, sense in objectives.items():
        if sense not in (MIN, MAX):
            raise ValueError(f"objective {key!r}: sense must be {MIN!r} or {MAX!r}, not {sense!r}")
    ok = [comparable(p, objectives) for p in points]
    live = [p for p, good in zip(points, ok) if good]
    return [good and not any(dominates(q, p, objectives) for q in live) for p, good in zip(points, ok)]
