"""Numbers and names for humans: the one formatter that the report, the plots, the CLI tables and
the model card share.

Why one module: the same fact (a UA, its interval, a compressed run's difference to fp32, the
verdict on that difference) is shown in many places, and written once here it reads the same
everywhere: fractions as percentages with one decimal, ``mean ± std`` over folds, ``value [low,
high]`` intervals without a "-0.0", p-values below 0.001 as ``< 0.001``, and a dash where there
is no number (``—`` by default; the CLI tables that always printed ``-`` pass ``missing="-"``).
Nothing here computes a result; :mod:`serbench.runtable` does that, and imports this module for the
few strings that are part of its tables (label maps, audits, verdicts).
"""
from __future__ import annotations

import math
import re

import pandas as pd

MISSING = "—"


def finite(x) -> float | None:
    """A finite float, else None (missing, NaN, infinite, not a number)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _absent(x) -> bool:
    return x is None or pd.isna(x)


def pct(x, missing: str = MISSING) -> str:
    """A fraction as a percentage with one decimal: ``0.614`` -> ``61.4``."""
    return missing if _absent(x) else f"{100 * float(x):.1f}"


def mean_std(mean, std=None, missing: str = MISSING) -> str:
    """Fractions as ``61.4 ± 2.0`` (percent; mean and std over folds), or the mean alone without a std."""
    if _absent(mean):
        return missing
    return pct(mean) + ("" if _absent(std) else f" ± {100 * float(std):.1f}")


def num(x, spec: str, missing: str = MISSING) -> str:
    """``format(x, spec)``, or ``missing``."""
    return missing if _absent(x) else format(float(x), spec)


def ci(value, low, high, scale: float = 100, spec: str = ".1f", missing: str = MISSING) -> str:
    """``61.4 [58.0, 64.9]`` (in points for fractions; ``spec="+.1f"`` for differences); the value
    alone where there is no interval, ``missing`` where there is no value."""
    value, low, high = finite(value), finite(low), finite(high)
    if value is None:
        return missing
    text = _signed(scale * value, spec)
    if low is None or high is None:
        return text
    return f"{text} [{_edge(scale * low, spec)}, {_edge(scale * high, spec)}]"


def _edge(x: float, spec: str) -> str:
    """An interval edge; a difference's (``spec`` "+...") edge that is not 0 but would round to it
    shows two significant digits (``+0.0040``): a "+0.0" must never hide the sign a verdict read."""
    text = _signed(x, spec)
    if spec.startswith("+") and float(text) == 0 and abs(x) > 1e-9:
        return format(x, f"+.{1 - math.floor(math.log10(abs(x)))}f")
    return text


def _signed(x: float, spec: str) -> str:
    """``format`` without a negative zero (-0.00001 shows as 0.0 / +0.0, not -0.0)."""
    text = format(x, spec)
    return format(0.0, spec) if float(text) == 0 else text


def p_value(x, missing: str = MISSING) -> str:
    """``0.034``, ``< 0.001``."""
    x = finite(x)
    return missing if x is None else ("< 0.001" if x < 0.001 else f"{x:.3f}")


#: the ΔUA (in points) within which a compressed model counts as equivalent to its reference: its
#: whole paired interval must lie inside ±1 point (an option of run and compare: --margin)
EQUIVALENCE_MARGIN = 1.0


def verdict(low, high, reference: str = "fp32", covers_zero=None, margin: float = EQUIVALENCE_MARGIN,
            step=None) -> str:
    """What a difference's interval (fractions) can say, and no more; ``margin`` in points:

    * "worse than fp32" / "better than fp32": the whole interval is below / above 0, by more than
      half of ``step`` (the smallest change one utterance makes): a bound that sits on 0 only
      because UA moves in whole utterances touches 0;
    * "equivalent to fp32 (within ±1.0 points)": it lies inside ±``margin``, and one utterance
      (``step``) moves UA by no more than the margin (else identical predictions on 6 utterances
      would count as proof);
    * "inconclusive vs fp32 at ±1.0 points": neither. Absence of evidence of a difference is not
      evidence of its absence: 16 test utterances give ΔUA −6.2 [−18.8, +0.0], which a "covers 0"
      rule called indistinguishable (:func:`resolution` says what the comparison could resolve).

    "—" without an interval; given only ``covers_zero``: "inconclusive" or "different from"."""
    low, high = finite(low), finite(high)
    if low is None or high is None:
        if covers_zero is None:
            return MISSING
        return f"inconclusive vs {reference}" if covers_zero else f"different from {reference}"
    step = finite(step) or 0.0
    if high < -step / 2:
        return f"worse than {reference}"
    if low > step / 2:
        return f"better than {reference}"
    m = margin / 100
    if -m <= low and high <= m and step <= m:   # a test set whose one utterance outweighs the margin resolves none
        return f"equivalent to {reference} (within ±{margin:.1f} points)"
    return f"inconclusive vs {reference} at ±{margin:.1f} points"


def paired_verdict(paired: dict, margin: float = EQUIVALENCE_MARGIN) -> str:
    """:func:`verdict` of a stored paired comparison's ΔUA (``summary["paired"]``)."""
    ua = paired.get("ua") or {}
    return verdict(ua.get("low"), ua.get("high"), paired.get("reference_recipe") or "fp32", ua.get("covers_zero"),
                   margin, ua.get("step"))


def resolution(paired: dict, margin: float = EQUIVALENCE_MARGIN) -> str | None:
    """Why a comparison is inconclusive: ``16 test utterances from 2 speakers cannot resolve ±1.0
    points (minimum detectable ΔUA 14.0 points)``; None when its verdict is not inconclusive or the
    stored comparison predates the minimum detectable difference."""
    ua = paired.get("ua") or {}
    if not paired_verdict(paired, margin).startswith("inconclusive") or finite(ua.get("mdd")) is None:
        return None
    n, k = paired.get("utterances"), paired.get("clusters")
    who = f"{n} test utterances from {k} speakers" if n and k else "its test utterances"
    step = finite(ua.get("step"))
    one = f"; one utterance moves UA by {100 * step:.1f} points" if step and 100 * step > margin else ""
    return (f"{who} cannot resolve ±{margin:.1f} points (minimum detectable ΔUA "
            f"{100 * ua['mdd']:.1f} points, 80 % power{one})")


def positions(value: str | None) -> str:
    """`` (Whisper positions cut)`` after a model's name, or nothing for a model without positions."""
    return f" (Whisper positions {value})" if value else ""


def label_map_text(maps: dict[str, str | None]) -> str:
    """Label maps for humans: ``ravdess-8class``, or ``crema-d-4class + iemocap-4class`` over
    several corpora; a name that does not start with its corpus's is written ``corpus:name``."""
    return " + ".join(m if m and m.startswith(c) else f"{c}:{m or 'default'}" for c, m in maps.items())


def audit_text(audit: list[dict]) -> str:
    """Per fold: speakers shared by train and test / speakers in test (``0/4, 0/4``)."""
    return ", ".join(f"{f['shared']}/{f['test_speakers']}" for f in audit)


def plot_label(r: dict, data_in_title: bool = False) -> str:
    """A run-table row's ``model/recipe`` label plus its marks (SYNTHETIC left out where the plot's
    title carries it)."""
    marks = [m for m in r["marks"].split(", ") if m and not (data_in_title and m == "SYNTHETIC")]
    return r["label"] + (f" [{', '.join(marks)}]" if marks else "")


def slug(text: str) -> str:
    """A file-name stem: lower case, runs of anything else than a-z0-9 as one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
