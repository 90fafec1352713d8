"""How a protocol becomes folds: scikit-learn's splitters on the utterance table, validation
carved from training data only, and every fold audited for shared speakers and shared audio
(the same bytes under two ids: one recording in two splits is leakage whatever the protocol).

:mod:`serbench.protocols` says *what* a protocol file may say; this module is the one place that
*splits*, so the no-leakage rules (validation never from test or train-only data, speaker
independence checked on the data, not assumed from the file) live next to the code they guard.
Splits are seeded: a protocol plus a seed always gives the same folds. ``p`` below is a
:class:`serbench.protocols.Protocol`; this module reads its fields and does not import it, so the
file format depends on the splitting and never the other way round.
"""
from __future__ import annotations

import re

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    GroupShuffleSplit,
    LeaveOneGroupOut,
    StratifiedGroupKFold,
    StratifiedKFold,
    StratifiedShuffleSplit,
)

from serbench.errors import SerbenchError
from serbench.manifest import Manifest

PAIRS = (("train", "val"), ("train", "test"), ("val", "test"))


def qualify(corpus: str, utt_id: str) -> str:
    """The protocol-wide id of an utterance: ``corpus/utt_id``."""
    return f"{corpus}/{utt_id}"


def unqualify(key: str) -> tuple[str, str]:
    """``"iemocap/Ses01F_impro01_F000"`` -> ``("iemocap", "Ses01F_impro01_F000")``."""
    corpus, _, utt = key.partition("/")
    return corpus, utt


@dataclass(frozen=True)
class Fold:
    """One train/validation/test split: qualified utterance ids (sorted) and its audit."""

    index: int
    name: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    audit: dict = field(compare=False)

    @property
    def label(self) -> str:
        """``fold 0 (Ses01)`` for a fold named after what it tests, ``fold 0 of 5`` for a k-fold one
        (whose name, ``fold 1/5``, counts from 1 where indices and ``--fold`` count from 0)."""
        if re.fullmatch(r"fold \d+/\d+", self.name):
            return f"fold {self.index} of {self.name.split('/')[1]}"
        return f"fold {self.index} ({self.name})"

    def shared_speakers(self, a: str = "train", b: str = "test") -> int:
        """How many speakers split ``a`` and split ``b`` have in common."""
        return self.audit["shared_speakers"][f"{a}-{b}"]["count"]


def make_folds(p, manifests: dict[str, Manifest], seed: int | None = None) -> list[Fold]:
    """Split the manifests into audited folds; deterministic for a given ``seed`` (default:
    the file's). Manifests the protocol does not name are ignored."""
    seed = p.seed if seed is None else int(seed)
    table = _table(p, manifests)
    classes = _classes(p, manifests)
    if p.kind == "cross-corpus":
        pool = table[table["corpus"].isin(p.train)]
        test = table.index[table["corpus"].isin(p.test)]
        outer = [("+".join(p.test), pool.index, test, [])]
    else:
        pool = table[table["corpus"] == p.corpus]
        outer = _outer(p, pool, seed)
    extra = table.index[table["corpus"].isin(p.train_only)]
    folds = []
    for k, (name, train_part, test_part, test_groups) in enumerate(outer):
        train_part = pool.loc[train_part]
        if p.validation.method == "next-group":
            groups = sorted(pool[p.unit].unique())
            val_group = groups[(groups.index(test_groups[0]) + 1) % len(groups)]
            in_val = (train_part[p.unit] == val_group).to_numpy()
            val_groups = [val_group]
        else:
            in_val, val_groups = _carve(p, train_part, _derive(seed, k), name)
        parts = {
            "train": sorted(train_part.index[~in_val].tolist() + extra.tolist()),
            "val": sorted(train_part.index[in_val].tolist()),
            "test": sorted(test_part.tolist()),
        }
        audit = _audit(table, parts, classes)
        audit["held_out"] = {"test": _plain(test_groups), "val": _plain(val_groups)}
        fold = Fold(k, name, tuple(parts["train"]), tuple(parts["val"]), tuple(parts["test"]), audit)
        _check(p, fold)
        folds.append(fold)
    return folds



def _table(p, manifests: dict[str, Manifest]) -> pd.DataFrame:
    roles = {c: "split" for c in ([p.corpus] if p.corpus else [])}
    roles.update({c: "train" for c in p.train})
    roles.update({c: "test" for c in p.test})
    roles.update({c: "train-only" for c in p.train_only})
    for c, role in roles.items():
        m = manifests.get(c)
        if m is None:
            raise SerbenchError(
                f"protocol {p.name} needs corpus {c!r} (role: {role}) but it was not given; "
                f"given: {', '.join(sorted(manifests)) or 'none'}"
            )
        if m.corpus != c:
            raise SerbenchError(f"protocol {p.name}: the manifest given as {c!r} is of corpus {m.corpus!r}")
        want = p.label_maps.get(c)
        if want is not None and m.label_map != want:
            raise SerbenchError(
                f"protocol {p.name} needs {c} with label map {want!r}, but its manifest was "
                f"prepared with {m.label_map!r}"
            )
        if len(m) == 0:
            raise SerbenchError(f"protocol {p.name}: corpus {c!r} has no usable utterances")
    return utterance_table({c: manifests[c] for c in roles})

def _classes(p, manifests: dict[str, Manifest]) -> tuple[str, ...]:
    sets = {c: tuple(manifests[c].classes) for c in p.corpora}
    if len(set(sets.values())) > 1:
        listed = "; ".join(f"{c}: {list(v)}" for c, v in sets.items())
        raise SerbenchError(f"protocol {p.name}: corpora have different classes ({listed}); "
                            "choose label maps that agree")
    return next(iter(sets.values()))

def _groups(p, frame: pd.DataFrame, unit: str, what: str) -> np.ndarray | None:
    if unit == "utterance":
        return None
    if unit == "session" and (frame["session"] == "").any():
        raise SerbenchError(
            f"protocol {p.name} splits {what} by session, but corpus "
            f"{', '.join(sorted(frame.loc[frame['session'] == '', 'corpus'].unique()))} has "
            "utterances without a session; use a speaker-based protocol (speaker-kfold, "
            "leave-one-speaker-out)"
        )
    return frame[unit].to_numpy()

def _outer(p, pool: pd.DataFrame, seed: int) -> list[tuple[str, pd.Index, pd.Index, list]]:
    y = pool["label"].to_numpy()
    groups = _groups(p, pool, p.unit, f"corpus {p.corpus}")
    n_groups = len(set(groups)) if groups is not None else len(pool)
    if p.kind == "leave-one-out":
        if p.n_folds is not None and p.n_folds != n_groups:
            raise SerbenchError(
                f"protocol {p.name} expects {p.n_folds} {p.unit}s in {p.corpus}, found "
                f"{n_groups}: {', '.join(map(str, _plain(sorted(set(groups)))))}"
            )
        splitter = LeaveOneGroupOut()
    elif p.kind == "kfold":
        if groups is not None and n_groups < p.n_folds:
            raise SerbenchError(f"protocol {p.name}: {p.n_folds} folds need at least "
                                f"{p.n_folds} {p.unit}s, {p.corpus} has {n_groups}")
        splitter = (StratifiedKFold(p.n_folds, shuffle=True, random_state=seed) if groups is None
                    else StratifiedGroupKFold(p.n_folds, shuffle=True, random_state=seed))
    else:  # holdout
        splitter = (StratifiedShuffleSplit(1, test_size=p.test_fraction, random_state=seed)
                    if groups is None
                    else GroupShuffleSplit(1, test_size=p.test_fraction, random_state=seed))
    try:
        splits = list(splitter.split(np.zeros(len(pool)), y, groups))
    except ValueError as exc:
        raise SerbenchError(f"protocol {p.name}: cannot split {p.corpus}: {exc}") from exc
    out = []
    for k, (tr, te) in enumerate(splits):
        test_groups = sorted(set(groups[te])) if groups is not None else []
        if p.kind == "leave-one-out":
            name = _unqualified(test_groups[0])
        elif p.kind == "kfold":
            name = f"fold {k + 1}/{p.n_folds}"
        else:
            name = "holdout"
        out.append((name, pool.index[tr], pool.index[te], test_groups))
    return out

def _carve(p, part: pd.DataFrame, seed: int, fold: str) -> tuple[np.ndarray, list]:
    """Validation rows (a boolean mask over ``part``) held out of a fold's training part."""
    v = p.validation
    y = part["label"].to_numpy()
    groups = _groups(p, part, v.unit, "validation")
    try:
        if groups is None:
            splitter = StratifiedShuffleSplit(1, test_size=v.fraction, random_state=seed)
            _, val = next(splitter.split(np.zeros(len(part)), y))
        else:
            n_groups = len(set(groups))
            if n_groups < 2:
                raise ValueError(f"the training part has only {n_groups} {v.unit}, cannot hold one out")
            n_splits = int(min(max(round(1 / v.fraction), 2), n_groups))
            splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
            _, val = next(splitter.split(np.zeros(len(part)), y, groups))
    except ValueError as exc:
        raise SerbenchError(f"protocol {p.name}, fold {fold}: cannot carve validation: {exc}") from exc
    mask = np.zeros(len(part), dtype=bool)
    mask[val] = True
    return mask, (sorted(set(groups[val])) if groups is not None else [])

def _check(p, fold: Fold) -> None:
    a = fold.audit
    for part in ("train", "val", "test"):
        if a["sizes"][part] == 0:
            raise SerbenchError(f"protocol {p.name}, fold {fold.name}: the {part} split is empty")
    ids = [set(fold.train), set(fold.val), set(fold.test)]
    if ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]:  # a bug here, never the data
        raise AssertionError(f"fold {fold.name}: an utterance is in two splits")
    for pair, shared in a["shared_audio"].items():
        if shared["count"]:
            raise SerbenchError(
                f"protocol {p.name}, {fold.label}: {shared['count']} recording(s) are in "
                f"both {pair.replace('-', ' and ')} under different ids (identical audio bytes): "
                f"{'; '.join(shared['utterances'][:5])}; remove the copies from the corpora"
            )
    if p.speaker_independent:
        for pair in ("train-test", "val-test"):
            shared = a["shared_speakers"][pair]
            if shared["count"]:
                raise SerbenchError(
                    f"protocol {p.name} is speaker-independent, but fold {fold.index} "
                    f"({fold.name}) has speakers in both {pair.replace('-', ' and ')}: "
                    f"{', '.join(shared['speakers'][:10])}; check the manifest's speaker and "
                    f"{p.unit} columns (each speaker must belong to one {p.unit})"
                )



def utterance_table(manifests: dict[str, Manifest]) -> pd.DataFrame:
    """All utterances of ``manifests`` in one frame indexed by qualified id (``key``).

    Columns: corpus, utt_id, speaker and session (both qualified by corpus; session ``""`` where
    the corpus has none), gender, label, audio_hash (``""`` where unknown). The trainer looks
    labels up here by fold ids.
    """
    frames = []
    for name, m in manifests.items():
        f = m.frame
        frames.append(pd.DataFrame({
            "key": [qualify(name, u) for u in f["utt_id"]],
            "corpus": name,
            "utt_id": f["utt_id"].to_numpy(),
            "speaker": [qualify(name, s) for s in f["speaker"]],
            "session": [qualify(name, s) if s else "" for s in f["session"]],
            "gender": f["gender"].to_numpy(),
            "label": f["label"].to_numpy(),
            "audio_hash": f["audio_hash"].to_numpy(),
        }))
    return pd.concat(frames, ignore_index=True).set_index("key")


def _audit(table: pd.DataFrame, parts: dict[str, list[str]], classes) -> dict:
    rows = {p: table.loc[ids] for p, ids in parts.items()}
    speakers = {p: set(r["speaker"]) for p, r in rows.items()}
    return {
        "sizes": {p: len(r) for p, r in rows.items()},
        "classes": {p: {c: int((r["label"] == c).sum()) for c in classes} for p, r in rows.items()},
        "corpora": {p: {k: int(v) for k, v in r["corpus"].value_counts().sort_index().items()}
                    for p, r in rows.items()},
        "speakers": {p: len(s) for p, s in speakers.items()},
        "shared_speakers": {
            f"{a}-{b}": {"count": len(speakers[a] & speakers[b]), "speakers": sorted(speakers[a] & speakers[b])}
            for a, b in PAIRS
        },
        "shared_audio": {f"{a}-{b}": _shared_audio(rows[a], rows[b]) for a, b in PAIRS},
    }


def _shared_audio(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """The recordings (audio hashes) in both ``a`` and ``b``: how many, and ``"x = y"`` per one
    naming their qualified ids on each side. Corpus readers keep one copy per corpus, so these
    are copies across corpora (or hand-built manifests)."""
    a, b = a[a["audio_hash"] != ""], b[b["audio_hash"] != ""]
    common = sorted(set(a["audio_hash"]) & set(b["audio_hash"]))

    def ids(rows: pd.DataFrame, digest: str) -> str:
        return ", ".join(sorted(rows.index[rows["audio_hash"] == digest]))

    return {"count": len(common), "utterances": [f"{ids(a, h)} = {ids(b, h)}" for h in common]}


def _derive(seed: int, fold: int) -> int:
    """A per-fold seed for the validation carve, independent of the outer split's stream."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])


def _unqualified(group: str) -> str:
    return unqualify(group)[1] if "/" in group else group


def _plain(groups) -> list[str]:
    return [str(g) for g in groups]
