"""Protocols: which corpora train, validate and test, and how they are split, plus a leakage audit.

A protocol is a data file (``protocols/<name>.yaml``); this module validates it and turns
``{corpus name: Manifest}`` into a list of :class:`Fold` objects. Splits come from scikit-learn's
splitters (LeaveOneGroupOut, StratifiedKFold, StratifiedGroupKFold, StratifiedShuffleSplit,
GroupShuffleSplit), seeded, so a protocol plus a seed always gives the same folds.

Three rules hold for every fold, whatever the file says:

* validation is drawn only from training-role data of that fold, never from the test part and
  never from ``train_only`` corpora (which exist to add training data, not to select models);
* utterance ids are qualified by corpus (``iemocap/Ses01F_impro01_F000``), and so are speakers
  (``ravdess/Actor_01``), so two corpora's ids or speaker codes can never collide;
* every fold carries an audit (sizes, class and corpus counts per split, speakers shared by each
  pair of splits). A protocol whose split unit is a speaker, session or corpus claims to be
  speaker-independent; if the data break that claim (a speaker in two sessions, say) building the
  folds fails instead of reporting a leaky score as speaker-independent.

File format (every key is checked; an unknown key is an error, so typos do not pass silently)::

    name: loso                      # = the file name
    description: one line
    corpus: iemocap                 # within-corpus: this corpus is split into folds ...
    train: [iemocap, crema-d]       # ... or cross-corpus: these train (and validate) ...
    test: [ravdess]                 #     ... and these test, whole
    train_only: [crema-d]           # optional: added to training of every fold, nothing else
    label_maps: {ravdess: ravdess-4class}   # optional: where not the recipe's default
    split:
      unit: session                 # utterance | speaker | session | corpus
      kind: leave-one-out           # leave-one-out | kfold | holdout | cross-corpus
      n_folds: 5                    # kfold: required; leave-one-out: optional check
      test_fraction: 0.05           # holdout only
    validation:
      method: next-group            # leave-one-out only: fold k validates on group k+1 (cyclic)
      # or: method: holdout, unit: utterance | speaker | session, fraction: 0.1
    seed: 0
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.model_selection import (
    GroupShuffleSplit,
    LeaveOneGroupOut,
    StratifiedGroupKFold,
    StratifiedKFold,
    StratifiedShuffleSplit,
)

from serbench import labels, schema
from serbench.errors import SerbenchError
from serbench.manifest import Manifest
from serbench.paths import data_root, find_yaml, home, yaml_files
from serbench.schema import Field

UNITS = ("utterance", "speaker", "session", "corpus")
KINDS = {  # split kind -> units it accepts
    "leave-one-out": ("speaker", "session"),
    "kfold": ("utterance", "speaker", "session"),
    "holdout": ("utterance", "speaker", "session"),
    "cross-corpus": ("corpus",),
}
VALIDATION_METHODS = ("next-group", "holdout")
PAIRS = (("train", "val"), ("train", "test"), ("val", "test"))
# Every key a protocol file may have (serbench.schema rejects any other, naming it). Only keys
# and plain types are declared here; the values' rules, many across fields, are in parse().
_SPLIT = (Field("unit"), Field("kind"), Field("n_folds"), Field("test_fraction"))
_VALIDATION = (Field("method"), Field("unit"), Field("fraction"))
_TOP = (Field("name", str, check=schema.non_empty), Field("description"), Field("corpus"), Field("train"),
        Field("test"), Field("train_only"), Field("label_maps"), Field("split"),
        Field("validation"), Field("seed"))


def qualify(corpus: str, utt_id: str) -> str:
    """The protocol-wide id of an utterance: ``corpus/utt_id``."""
    return f"{corpus}/{utt_id}"


def unqualify(key: str) -> tuple[str, str]:
    """``"iemocap/Ses01F_impro01_F000"`` -> ``("iemocap", "Ses01F_impro01_F000")``."""
    corpus, _, utt = key.partition("/")
    return corpus, utt


@dataclass(frozen=True)
class Validation:
    method: str
    unit: str | None = None
    fraction: float | None = None


@dataclass(frozen=True)
class Fold:
    """One train/validation/test split: qualified utterance ids (sorted) and its audit."""

    index: int
    name: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    audit: dict = field(compare=False)

    def shared_speakers(self, a: str = "train", b: str = "test") -> int:
        """How many speakers split ``a`` and split ``b`` have in common."""
        return self.audit["shared_speakers"][f"{a}-{b}"]["count"]


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    path: str
    text: str  # the file's content, stored with every run for provenance
    unit: str
    kind: str
    validation: Validation
    corpus: str | None = None
    train: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    train_only: tuple[str, ...] = ()
    label_maps: dict[str, str] = field(default_factory=dict)
    n_folds: int | None = None
    test_fraction: float | None = None
    seed: int = 0

    @property
    def corpora(self) -> tuple[str, ...]:
        """Every corpus the protocol needs, in role order (split/train, test, train-only)."""
        main = (self.corpus,) if self.corpus else self.train + self.test
        return main + self.train_only

    @property
    def speaker_independent(self) -> bool:
        """Whether test speakers are, by construction, never seen in training or validation."""
        return self.unit != "utterance"

    def label_map(self, corpus: str) -> str | None:
        """The label map to prepare ``corpus`` with: the file's choice, else the recipe default
        (``None`` for a corpus without a recipe, e.g. a manifest CSV)."""
        if corpus in self.label_maps:
            return self.label_maps[corpus]
        from serbench.corpora import RECIPES  # lazy: pulls in audio probing

        recipe = RECIPES.get(corpus)
        return recipe.DEFAULT_LABEL_MAP if recipe is not None else None

    def with_corpus(self, corpus: str) -> Protocol:
        """The same within-corpus protocol applied to another corpus (e.g. speaker-kfold on emodb)."""
        if self.corpus is None:
            raise SerbenchError(f"protocol {self.name} is cross-corpus; its corpora are fixed by the file")
        if corpus in self.train_only:
            raise SerbenchError(f"protocol {self.name}: {corpus} is a train-only corpus here")
        maps = {k: v for k, v in self.label_maps.items() if k != self.corpus}
        return dataclasses.replace(self, corpus=corpus, label_maps=maps)

    def config(self) -> dict:
        """The parsed protocol as plain data (what actually ran, overrides included)."""
        out = dataclasses.asdict(self)
        out.pop("text")
        out["corpora"] = list(self.corpora)
        return out

    def folds(self, manifests: dict[str, Manifest], seed: int | None = None) -> list[Fold]:
        """Split the manifests into audited folds; deterministic for a given ``seed`` (default:
        the file's). Manifests the protocol does not name are ignored."""
        seed = self.seed if seed is None else int(seed)
        table = self._table(manifests)
        classes = self._classes(manifests)
        if self.kind == "cross-corpus":
            pool = table[table["corpus"].isin(self.train)]
            test = table.index[table["corpus"].isin(self.test)]
            outer = [("+".join(self.test), pool.index, test, [])]
        else:
            pool = table[table["corpus"] == self.corpus]
            outer = self._outer(pool, seed)
        extra = table.index[table["corpus"].isin(self.train_only)]
        folds = []
        for k, (name, train_part, test_part, test_groups) in enumerate(outer):
            train_part = pool.loc[train_part]
            if self.validation.method == "next-group":
                groups = sorted(pool[self.unit].unique())
                val_group = groups[(groups.index(test_groups[0]) + 1) % len(groups)]
                in_val = (train_part[self.unit] == val_group).to_numpy()
                val_groups = [val_group]
            else:
                in_val, val_groups = self._carve(train_part, _derive(seed, k), name)
            parts = {
                "train": sorted(train_part.index[~in_val].tolist() + extra.tolist()),
                "val": sorted(train_part.index[in_val].tolist()),
                "test": sorted(test_part.tolist()),
            }
            audit = _audit(table, parts, classes)
            audit["held_out"] = {"test": _plain(test_groups), "val": _plain(val_groups)}
            fold = Fold(k, name, tuple(parts["train"]), tuple(parts["val"]), tuple(parts["test"]), audit)
            self._check(fold)
            folds.append(fold)
        return folds

    # -- internals ---------------------------------------------------------------------------

    def _table(self, manifests: dict[str, Manifest]) -> pd.DataFrame:
        roles = {c: "split" for c in ([self.corpus] if self.corpus else [])}
        roles.update({c: "train" for c in self.train})
        roles.update({c: "test" for c in self.test})
        roles.update({c: "train-only" for c in self.train_only})
        for c, role in roles.items():
            m = manifests.get(c)
            if m is None:
                raise SerbenchError(
                    f"protocol {self.name} needs corpus {c!r} (role: {role}) but it was not given; "
                    f"given: {', '.join(sorted(manifests)) or 'none'}"
                )
            if m.corpus != c:
                raise SerbenchError(f"protocol {self.name}: the manifest given as {c!r} is of corpus {m.corpus!r}")
            want = self.label_maps.get(c)
            if want is not None and m.label_map != want:
                raise SerbenchError(
                    f"protocol {self.name} needs {c} with label map {want!r}, but its manifest was "
                    f"prepared with {m.label_map!r}"
                )
            if len(m) == 0:
                raise SerbenchError(f"protocol {self.name}: corpus {c!r} has no usable utterances")
        return utterance_table({c: manifests[c] for c in roles})

    def _classes(self, manifests: dict[str, Manifest]) -> tuple[str, ...]:
        sets = {c: tuple(manifests[c].classes) for c in self.corpora}
        if len(set(sets.values())) > 1:
            listed = "; ".join(f"{c}: {list(v)}" for c, v in sets.items())
            raise SerbenchError(f"protocol {self.name}: corpora have different classes ({listed}); "
                                "choose label maps that agree")
        return next(iter(sets.values()))

    def _groups(self, frame: pd.DataFrame, unit: str, what: str) -> np.ndarray | None:
        if unit == "utterance":
            return None
        if unit == "session" and (frame["session"] == "").any():
            raise SerbenchError(
                f"protocol {self.name} splits {what} by session, but corpus "
                f"{', '.join(sorted(frame.loc[frame['session'] == '', 'corpus'].unique()))} has "
                "utterances without a session; use a speaker-based protocol (speaker-kfold, "
                "leave-one-speaker-out)"
            )
        return frame[unit].to_numpy()

    def _outer(self, pool: pd.DataFrame, seed: int) -> list[tuple[str, pd.Index, pd.Index, list]]:
        y = pool["label"].to_numpy()
        groups = self._groups(pool, self.unit, f"corpus {self.corpus}")
        n_groups = len(set(groups)) if groups is not None else len(pool)
        if self.kind == "leave-one-out":
            if self.n_folds is not None and self.n_folds != n_groups:
                raise SerbenchError(
                    f"protocol {self.name} expects {self.n_folds} {self.unit}s in {self.corpus}, found "
                    f"{n_groups}: {', '.join(map(str, _plain(sorted(set(groups)))))}"
                )
            splitter = LeaveOneGroupOut()
        elif self.kind == "kfold":
            if groups is not None and n_groups < self.n_folds:
                raise SerbenchError(f"protocol {self.name}: {self.n_folds} folds need at least "
                                    f"{self.n_folds} {self.unit}s, {self.corpus} has {n_groups}")
            splitter = (StratifiedKFold(self.n_folds, shuffle=True, random_state=seed) if groups is None
                        else StratifiedGroupKFold(self.n_folds, shuffle=True, random_state=seed))
        else:  # holdout
            splitter = (StratifiedShuffleSplit(1, test_size=self.test_fraction, random_state=seed)
                        if groups is None
                        else GroupShuffleSplit(1, test_size=self.test_fraction, random_state=seed))
        try:
            splits = list(splitter.split(np.zeros(len(pool)), y, groups))
        except ValueError as exc:
            raise SerbenchError(f"protocol {self.name}: cannot split {self.corpus}: {exc}") from exc
        out = []
        for k, (tr, te) in enumerate(splits):
            test_groups = sorted(set(groups[te])) if groups is not None else []
            if self.kind == "leave-one-out":
                name = _unqualified(test_groups[0])
            elif self.kind == "kfold":
                name = f"fold {k + 1}/{self.n_folds}"
            else:
                name = "holdout"
            out.append((name, pool.index[tr], pool.index[te], test_groups))
        return out

    def _carve(self, part: pd.DataFrame, seed: int, fold: str) -> tuple[np.ndarray, list]:
        """Validation rows (a boolean mask over ``part``) held out of a fold's training part."""
        v = self.validation
        y = part["label"].to_numpy()
        groups = self._groups(part, v.unit, "validation")
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
            raise SerbenchError(f"protocol {self.name}, fold {fold}: cannot carve validation: {exc}") from exc
        mask = np.zeros(len(part), dtype=bool)
        mask[val] = True
        return mask, (sorted(set(groups[val])) if groups is not None else [])

    def _check(self, fold: Fold) -> None:
        a = fold.audit
        for part in ("train", "val", "test"):
            if a["sizes"][part] == 0:
                raise SerbenchError(f"protocol {self.name}, fold {fold.name}: the {part} split is empty")
        ids = [set(fold.train), set(fold.val), set(fold.test)]
        if ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]:  # a bug here, never the data
            raise AssertionError(f"fold {fold.name}: an utterance is in two splits")
        if self.speaker_independent:
            for pair in ("train-test", "val-test"):
                shared = a["shared_speakers"][pair]
                if shared["count"]:
                    raise SerbenchError(
                        f"protocol {self.name} is speaker-independent, but fold {fold.index} "
                        f"({fold.name}) has speakers in both {pair.replace('-', ' and ')}: "
                        f"{', '.join(shared['speakers'][:10])}; check the manifest's speaker and "
                        f"{self.unit} columns (each speaker must belong to one {self.unit})"
                    )


def utterance_table(manifests: dict[str, Manifest]) -> pd.DataFrame:
    """All utterances of ``manifests`` in one frame indexed by qualified id (``key``).

    Columns: corpus, utt_id, speaker and session (both qualified by corpus; session ``""`` where
    the corpus has none), gender, label. The trainer looks labels up here by fold ids.
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
    }


def _derive(seed: int, fold: int) -> int:
    """A per-fold seed for the validation carve, independent of the outer split's stream."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])


def _unqualified(group: str) -> str:
    return unqualify(group)[1] if "/" in group else group


def _plain(groups) -> list[str]:
    return [str(g) for g in groups]


# -- loading ---------------------------------------------------------------------------------


def protocol_dirs() -> list[Path]:
    """Built-in ``protocols/`` first, then ``$SERBENCH_HOME/protocols`` (later ones override)."""
    return [d for d in (data_root() / "protocols", home() / "protocols") if d.is_dir()]


def available() -> dict[str, Path]:
    """Protocol names to files."""
    return yaml_files(protocol_dirs())


def load(name_or_path: str | Path) -> Protocol:
    """A protocol by name (``loso``) or from a ``.yaml`` path, validated."""
    path = find_yaml(name_or_path, available(), "protocol")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SerbenchError(f"{path}: not valid YAML: {exc}") from exc
    return parse(data, path, text)


def parse(data, path: Path | str, text: str = "") -> Protocol:
    """Validate a protocol's parsed YAML; every error names the file and the field."""
    path = Path(path)

    def bad(fld: str, why: str):
        return schema.error(path, fld, why)

    if not isinstance(data, dict):
        raise SerbenchError(f"{path}: a protocol file must be a mapping of fields")
    schema.validate(data, _TOP, path)
    name = schema.check_name(data, path)
    description = data.get("description")
    if not isinstance(description, str) or not description.strip():
        raise bad("description", "required: one line saying what the protocol measures")

    def names(fld: str, required: bool) -> tuple[str, ...]:
        val = data.get(fld)
        if val is None:
            if required:
                raise bad(fld, "required: a list of corpus names")
            return ()
        if isinstance(val, str):
            val = [val]
        if not isinstance(val, list) or not val or not all(isinstance(v, str) and v for v in val):
            raise bad(fld, "must be a non-empty list of corpus names")
        if len(set(val)) != len(val):
            raise bad(fld, "lists a corpus twice")
        return tuple(val)

    corpus = data.get("corpus")
    if corpus is not None and (not isinstance(corpus, str) or not corpus):
        raise bad("corpus", "must be a corpus name")
    cross = "train" in data or "test" in data
    if corpus is not None and cross:
        raise bad("corpus", "give either 'corpus' (split one corpus) or 'train' + 'test' (cross-corpus), not both")
    if corpus is None and not cross:
        raise bad("corpus", "required: the corpus to split (or 'train' + 'test' for cross-corpus)")
    train, test = names("train", cross), names("test", cross)
    train_only = names("train_only", False)
    if set(train) & set(test):
        raise bad("test", f"{sorted(set(train) & set(test))} also in 'train'")
    overlap = set(train_only) & ({corpus} | set(train) | set(test))
    if overlap:
        raise bad("train_only", f"{sorted(overlap)} already has another role")

    corpora = ({corpus} if corpus else set(train) | set(test)) | set(train_only)
    label_maps = data.get("label_maps") or {}
    if not isinstance(label_maps, dict):
        raise bad("label_maps", "must map corpus name -> label map name")
    known_maps = labels.available()
    for c, m in label_maps.items():
        if c not in corpora:
            raise bad(f"label_maps.{c}", f"{c!r} is not one of the protocol's corpora {sorted(corpora)}")
        if not isinstance(m, str) or m not in known_maps:
            raise bad(f"label_maps.{c}", f"unknown label map {m!r}; known: {', '.join(sorted(known_maps))}")

    split = data.get("split")
    if not isinstance(split, dict):
        raise bad("split", "required: a mapping with unit and kind")
    schema.validate(split, _SPLIT, path, "split.")
    kind, unit = split.get("kind"), split.get("unit")
    if kind not in KINDS:
        raise bad("split.kind", f"must be one of {', '.join(KINDS)} (got {kind!r})")
    if unit not in KINDS[kind]:
        raise bad("split.unit", f"a {kind} split takes unit {' or '.join(KINDS[kind])} (got {unit!r})")
    if (kind == "cross-corpus") != cross:
        raise bad("split.kind", "cross-corpus goes with 'train' + 'test'; other kinds with 'corpus'")
    n_folds = split.get("n_folds")
    if n_folds is not None and (isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 1):
        raise bad("split.n_folds", f"must be a positive integer (got {n_folds!r})")
    if kind == "kfold" and (n_folds is None or n_folds < 2):
        raise bad("split.n_folds", "a kfold split needs n_folds >= 2")
    if kind in ("holdout", "cross-corpus") and n_folds not in (None, 1):
        raise bad("split.n_folds", f"a {kind} split has exactly one fold")
    test_fraction = split.get("test_fraction")
    if kind == "holdout":
        test_fraction = _fraction(test_fraction, lambda why: bad("split.test_fraction", why))
    elif test_fraction is not None:
        raise bad("split.test_fraction", "only a holdout split takes a test fraction")

    v = data.get("validation")
    if not isinstance(v, dict):
        raise bad("validation", "required: how validation is drawn from the training part")
    schema.validate(v, _VALIDATION, path, "validation.")
    method = v.get("method")
    if method not in VALIDATION_METHODS:
        raise bad("validation.method", f"must be one of {', '.join(VALIDATION_METHODS)} (got {method!r})")
    if method == "next-group":
        if kind != "leave-one-out":
            raise bad("validation.method", "next-group needs a leave-one-out split (groups in a cycle)")
        if "unit" in v or "fraction" in v:
            raise bad("validation", "next-group takes no unit or fraction (it uses the split's unit)")
        validation = Validation("next-group", unit)
    else:
        vunit = v.get("unit")
        if vunit not in ("utterance", "speaker", "session"):
            raise bad("validation.unit", f"must be utterance, speaker or session (got {vunit!r})")
        validation = Validation("holdout", vunit, _fraction(v.get("fraction"),
                                                             lambda why: bad("validation.fraction", why)))
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise bad("seed", f"must be an integer (got {seed!r})")
    return Protocol(
        name=name, description=description.strip(), path=str(path), text=text, unit=unit, kind=kind,
        validation=validation, corpus=corpus, train=train, test=test, train_only=train_only,
        label_maps={str(k): str(val) for k, val in label_maps.items()}, n_folds=n_folds,
        test_fraction=test_fraction, seed=seed,
    )


def _fraction(value, bad) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise bad(f"must be a number strictly between 0 and 1 (got {value!r})")
    return float(value)
