"""``serbench gate``: fail CI when the latest runs score worse than a committed baseline.

The baseline is a small JSON file kept in the repository (``reports/baseline.json``): for each
``model/recipe/protocol`` the UA and accuracy per MB (UA / size in MB) of the run it was made
from, whether its data were synthetic and what kind of weights it used, plus metadata saying when
and from which commit it was written. Why these two numbers: UA is the headline score, and UA per
MB is the trade-off a compression recipe exists for, so a change that makes a model bigger
without making it better fails too.

Tolerances, and why they differ:

* UA: **absolute** (0.01 = one percentage point), because UA is already on a fixed 0..1 scale.
* UA per MB: **relative** (0.01 = 1 %), because its scale depends on the model's size (0.5/MB for a
  1 MB model, 0.002/MB for a 300 MB one), so an absolute allowance would mean nothing.

With ``--paired`` both are judged against noise: the size is measured exactly, but UA carries the
paired interval, so UA per MB fails only when even the top of that interval, over the current
size, is more than the tolerance below the baseline. On a small test set a couple of utterances
move UA per MB by more than 1 % on their own (the CI benchmark's dynamic-int8 went −1.38 % after
an intended export change, ΔUA −0.006); a model that grew without getting better still fails.

A baseline entry with no current run is a failure unless ``allow_missing`` (a benchmark that
silently stops running must not pass); a current run with no baseline entry is only reported.
An entry whose data kind (synthetic or real) or weights kind changed is not comparable and fails:
``--update`` is how such a change is accepted.
"""
from __future__ import annotations

import codecs
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from serbench import atomic, fmt, runtable
from serbench.errors import SerbenchError
from serbench.provenance import cpu_isa, git_state
from serbench.store import Store

FORMAT = 1
GATE_KEY = ("model", "recipe", "protocol")
EPS = 1e-12  # float noise; a score equal to the baseline never fails


@dataclass(frozen=True)
class Tolerance:
    ua: float = 0.01          # absolute, on UA as a fraction
    acc_per_mb: float = 0.01  # relative, as a fraction of the baseline's value

    def __post_init__(self):
        for name in ("ua", "acc_per_mb"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise SerbenchError(f"tolerance on {name} must be a number >= 0, not {value!r}")


@dataclass
class Outcome:
    rows: list[dict] = field(default_factory=list)   # one per (entry, metric) or per entry status
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def key(model: str, recipe: str, protocol: str) -> str:
    return f"{model}/{recipe}/{protocol}"


def current_entries(db: Store) -> dict[str, dict]:
    """The latest finished run per (model, recipe, protocol), as baseline-shaped entries, each with
    its test predictions (what ``--paired`` compares utterance by utterance)."""
    runs = db.runs()
    if runs.empty:
        raise SerbenchError(f"{db.path}: the store holds no runs (run the benchmark first)")
    table = runtable.run_table(db, runtable.select_runs(runs, key=GATE_KEY))
    out = {}
    for r in table.to_dict("records"):
        entry = {k: _plain(v) for k, v in {
            "ua": r["ua"], "acc_per_mb": r["acc_per_mb"], "size_mb": r["size_mb"], "data": r["data"],
            "synthetic": r["data"] != "real", "weights": r["weights"], "weights_kind": r["weights_kind"],
            "mode": r["mode"], "folds": r["folds"], "run_id": r["run_id"], "created": r["created"],
        }.items()}
        run = db.run(int(r["run_id"]))
        preds = db.predictions(int(r["run_id"]))
        entry["classes"] = list(run["config"].get("classes") or [])
        entry["predictions"] = [[u, s, t, p] for u, s, t, p in sorted(zip(
            preds["utt_id"], preds["speaker"] if "speaker" in preds else [None] * len(preds),
            preds["y_true"], preds["y_pred"]))]
        out[key(r["model"], r["recipe"], r["protocol"])] = entry
    return out


def _plain(value):
    """numpy scalars -> Python; NaN (pandas' missing float) -> None, so the JSON stays valid."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# -- baseline file -------------------------------------------------------------------------------


def load_baseline(path: str | Path) -> dict[str, dict]:
    """The entries of the baseline at ``path``; errors name the file and what is wrong with it."""
    path = Path(path)
    if path.is_dir():
        raise SerbenchError(f"{path}: is a folder; --baseline wants a JSON file, e.g. {path / 'baseline.json'}")
    if not path.is_file():
        raise SerbenchError(f"{path}: no baseline file there (write one from the current runs with "
                            f"`serbench gate --baseline {path} --update`)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise atomic.error(exc, path, "baseline", "read") from exc
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark (some Windows editors write one) is fine
    except UnicodeDecodeError as exc:
        bom = next((n for b, n in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                                   (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))
                    if raw.startswith(b)), None)
        what = f"it is {bom}" if bom else f"byte {exc.start} is not UTF-8"
        raise SerbenchError(f"{path}: not UTF-8 text ({what}); save the baseline as UTF-8 JSON") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SerbenchError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
        raise SerbenchError(f"{path}: not a serbench baseline (expected an object with an \"entries\" object)")
    version = doc.get("format", FORMAT)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SerbenchError(f"{path}: \"format\" must be a whole number (this serbench writes {FORMAT}), "
                            f"not {version!r}")
    if version > FORMAT:
        raise SerbenchError(f"{path}: baseline format {version} is newer than this serbench reads ({FORMAT})")
    for name, entry in doc["entries"].items():
        if name.count("/") != 2:
            raise SerbenchError(f"{path}: entry {name!r} is not named model/recipe/protocol")
        if not isinstance(entry, dict) or not _is_number(entry.get("ua")):
            raise SerbenchError(f"{path}: entry {name!r} has no numeric \"ua\"")
        if entry.get("acc_per_mb") is not None and not _is_number(entry["acc_per_mb"]):
            raise SerbenchError(f"{path}: entry {name!r}: \"acc_per_mb\" must be a number or null")
    return doc["entries"]


def baseline_document(entries: dict[str, dict], store: str | Path) -> dict:
    """What ``--update`` writes: the entries (sorted, so diffs of the file are readable) and where
    they came from."""
    commit, dirty = git_state()
    return {
        "format": FORMAT,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit, "git_dirty": dirty, "store": str(store),
        "machine": cpu_isa(),  # UA and size are the same on every CPU; the record says where they were made
        "tolerance_note": "serbench gate: UA tolerance is absolute, UA-per-MB tolerance is relative",
        "entries": {k: entries[k] for k in sorted(entries)},
    }


def write_baseline(path: str | Path, entries: dict[str, dict], store: str | Path) -> Path:
    """Write the baseline atomically (a failure leaves the previous file as it was, and no temporary)."""
    doc = baseline_document(entries, store)
    return atomic.write_text(Path(path), json.dumps(doc, indent=2, allow_nan=False) + "\n", what="baseline")


# -- comparison ----------------------------------------------------------------------------------


def compare(baseline: dict[str, dict], current: dict[str, dict], tol: Tolerance = Tolerance(),
            allow_missing: bool = False, paired: bool = False, n_resamples: int = 1000, seed: int = 0) -> Outcome:
    """Each baseline entry against the current run of the same name.

    Point mode (default) fails when UA drops by more than the tolerance. ``paired`` asks whether the
    drop is *real*: the two runs' predictions are compared utterance by utterance, and UA fails
    only when the whole 95 % speaker-clustered interval of the difference lies below
    ``-tol.ua`` (so noise from another seed passes, a real regression does not)."""
    out = Outcome()
    for name in sorted(baseline):
        base, cur = baseline[name], current.get(name)
        if cur is None:
            out.rows.append(_row(name, "-", None, None, "MISSING" if not allow_missing else "missing (allowed)"))
            if not allow_missing:
                out.failures.append(f"{name}: in the baseline but no finished run in the store")
            continue
        changed = [f"{k} {base.get(k)!r} -> {cur.get(k)!r}" for k in ("data", "weights_kind")
                   if base.get(k) is not None and base.get(k) != cur.get(k)]
        if changed:
            out.rows.append(_row(name, "-", None, None, "NOT COMPARABLE"))
            out.failures.append(f"{name}: not comparable with the baseline ({'; '.join(changed)}); "
                                "accept the change with --update")
            continue
        best = None   # the most UA per MB the current run's UA interval allows (paired only)
        if paired:
            res = _check_ua_paired(out, name, base, cur, tol.ua, n_resamples, seed)
            if res is not None and cur.get("acc_per_mb") is not None and cur.get("ua"):
                best = cur["acc_per_mb"] * (base["ua"] + res["high"]) / cur["ua"]
        else:
            _check_ua(out, name, base["ua"], cur["ua"], tol.ua)
        _check_acc_per_mb(out, name, base.get("acc_per_mb"), cur.get("acc_per_mb"), tol.acc_per_mb, best)
    for name in sorted(set(current) - set(baseline)):
        out.rows.append(_row(name, "-", None, None, "new (not in baseline)"))
    return out


def _check_ua(out: Outcome, name: str, base: float, cur: float | None, tol: float) -> None:
    if cur is None:
        out.rows.append(_row(name, "UA", base, None, "REGRESSED"))
        out.failures.append(f"{name}: UA {base:.4f} -> none (the run has no UA)")
        return
    delta = cur - base
    status = "REGRESSED" if delta < -tol - EPS else ("improved" if delta > EPS else "ok")
    out.rows.append(_row(name, "UA", base, cur, status, f"{delta:+.4f}", f"-{tol:.4f}"))
    if status == "REGRESSED":
        out.failures.append(f"{name}: UA {base:.4f} -> {cur:.4f} ({delta:+.4f}, {100 * delta:+.2f} points; "
                            f"tolerance {tol:.4f} absolute)")


def _check_ua_paired(out: Outcome, name: str, base: dict, cur: dict, tol: float, n_resamples: int,
                     seed: int) -> dict | None:
    """The paired UA check; returns the interval of the UA difference (None: not comparable)."""
    from serbench import stats

    missing = [who for who, e in (("baseline", base), ("current run", cur)) if not e.get("predictions")]
    if missing:
        out.rows.append(_row(name, "ΔUA paired", None, None, "NOT COMPARABLE"))
        out.failures.append(f"{name}: the {' and the '.join(missing)} has no stored predictions, so a paired "
                            "comparison is impossible (rewrite the baseline with --update)")
        return None
    b = {u: (s, t, p) for u, s, t, p in base["predictions"]}
    c = {u: (s, t, p) for u, s, t, p in cur["predictions"]}
    if set(b) != set(c) or any(b[u][1] != c[u][1] for u in b):
        out.rows.append(_row(name, "ΔUA paired", None, None, "NOT COMPARABLE"))
        out.failures.append(f"{name}: the baseline and the current run were scored on different test utterances "
                            f"or labels ({len(set(b) ^ set(c))} utterances differ); accept with --update")
        return None
    utts = sorted(b)
    speakers = [b[u][0] if b[u][0] is not None else u for u in utts]   # no speakers stored: per utterance
    classes = base.get("classes") or sorted({b[u][1] for u in utts})
    res = stats.paired_bootstrap([b[u][1] for u in utts], [b[u][2] for u in utts], [c[u][2] for u in utts],
                                 speakers, classes, n_resamples=n_resamples, seed=seed)["ua"]
    touch = (res.get("step") or 0.0) / 2   # fmt.verdict's rule: a bound within half an utterance's step touches 0
    status = "REGRESSED" if res["high"] < -tol - EPS else ("improved" if res["low"] > max(EPS, touch) else "ok")
    change = f"{res['delta']:+.4f} [{res['low']:+.4f}, {res['high']:+.4f}]"
    out.rows.append(_row(name, "ΔUA paired", base["ua"], cur["ua"], status, change, f"-{tol:.4f}"))
    if status == "REGRESSED":
        out.failures.append(f"{name}: UA {base['ua']:.4f} -> {cur['ua']:.4f}; the 95 % speaker interval of the "
                            f"difference [{res['low']:+.4f}, {res['high']:+.4f}] lies below -{tol:.4f}: a real "
                            "regression, not noise")
    return res


def _check_acc_per_mb(out: Outcome, name: str, base: float | None, cur: float | None, tol: float,
                      best: float | None = None) -> None:
    """UA per MB against the baseline; with ``best`` (paired: the current size with the top of the
    UA interval) a drop fails only when ``best`` itself is more than ``tol`` below the baseline."""
    if base is None and cur is None:
        out.rows.append(_row(name, "UA/MB", None, None, "n/a (weight-free)"))
        return
    if base is None or cur is None:
        out.rows.append(_row(name, "UA/MB", base, cur, "REGRESSED" if cur is None else "improved"))
        if cur is None:
            out.failures.append(f"{name}: UA/MB {base:.4g} -> none (the run's size is 0 or unknown)")
        return
    rel = cur / base - 1 if base else math.inf
    top = cur if best is None else max(cur, best)
    status = "REGRESSED" if top < base * (1 - tol) - EPS else ("improved" if cur > base + EPS else "ok")
    change = f"{100 * rel:+.2f}%" + ("" if best is None else f" [up to {100 * (top / base - 1):+.2f}%]")
    out.rows.append(_row(name, "UA/MB paired" if best is not None else "UA/MB", base, cur, status, change,
                         f"-{100 * tol:.2f}%"))
    if status == "REGRESSED":
        why = ("" if best is None else f"; even the top of the UA interval gives {top:.4g}, "
               f"{100 * (top / base - 1):+.2f}%")
        out.failures.append(f"{name}: UA/MB {base:.4g} -> {cur:.4g} ({100 * rel:+.2f}%{why}; "
                            f"tolerance {100 * tol:.2f}% relative)")


def _row(name, metric, base, cur, status, change="", allowed="") -> dict:
    return {"entry": name, "metric": metric, "baseline": fmt.num(base, ".4g"), "current": fmt.num(cur, ".4g"),
            "change": change, "allowed": allowed, "status": status}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
