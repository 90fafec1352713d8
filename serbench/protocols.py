"""Protocols: which corpora train, validate and test, and how they are split, plus a leakage audit.

A protocol is a data file (``protocols/<name>.yaml``); this module finds and validates it, and
:meth:`Protocol.folds` turns ``{corpus name: Manifest}`` into audited folds through
:mod:`serbench.splits` (scikit-learn's LeaveOneGroupOut, StratifiedKFold, StratifiedGroupKFold,
StratifiedShuffleSplit, GroupShuffleSplit), seeded, so a protocol plus a seed always gives the
same folds.

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

from serbench import labels, schema, splits
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
# Every key a protocol file may have (serbench.schema rejects any other, naming it). Only keys
# and plain types are declared here; the values' rules, many across fields, are in parse().
_SPLIT = (Field("unit"), Field("kind"), Field("n_folds"), Field("test_fraction"))
_VALIDATION = (Field("method"), Field("unit"), Field("fraction"))
_TOP = (Field("name", str, check=schema.non_empty), Field("description"), Field("corpus"), Field("train"),
        Field("test"), Field("train_only"), Field("label_maps"), Field("split"),
        Field("validation"), Field("seed"))


@dataclass(frozen=True)
class Validation:
    method: str
    unit: str | None = None
    fraction: float | None = None


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

    def folds(self, manifests: dict[str, Manifest], seed: int | None = None) -> list[splits.Fold]:
        """Split the manifests into audited folds (:func:`serbench.splits.make_folds`);
        deterministic for a given ``seed`` (default: the file's). Manifests the protocol does not
        name are ignored."""
        return splits.make_folds(self, manifests, seed)


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
    return parse(schema.loads(text, path), path, text)


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
    if schema.seed(seed):
        raise bad("seed", schema.seed(seed))
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
