"""The Manifest: one row per usable utterance, plus what was left out and why.

Every corpus recipe produces one; everything downstream (splits, embedding, training) reads only
this table, so a new corpus needs a recipe and nothing else.
"""
from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

COLUMNS = [
    "utt_id", "path", "corpus", "speaker", "session", "gender",
    "label", "raw_label", "duration", "sample_rate", "audio_hash",
]
OPTIONAL = {"audio_hash": ""}  # columns a hand-built frame may leave out, with their fill value


def normalise(text: str) -> str:
    """The one normal form of every label, speaker, session, gender and id string a corpus gives.

    Surrounding whitespace is stripped and the text put in Unicode NFC, so ``"angry "`` is
    ``"angry"`` and "e" + a combining acute accent is the one character "é": strings that print
    the same are the same class or speaker. Case is kept (``Angry`` and ``angry`` may be meant
    as different).
    """
    return unicodedata.normalize("NFC", str(text)).strip()


def audio_hash(path) -> str:
    """sha256 of the file's bytes: an audio file's identity, whatever its name, id or timestamps.

    The one definition: the manifest's ``audio_hash`` (copies under two ids are one recording)
    and the embedding cache's key (:func:`serbench.embed.file_hashes`) are this same digest. The
    whole file is read, streamed (about 0.06 s for RAVDESS's 53 MB of FLAC once cached).
    """
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@dataclass(frozen=True)
class Skipped:
    """A file the recipe could not use: unreadable, empty, or with a name it cannot parse."""

    path: str
    reason: str


@dataclass
class Manifest:
    corpus: str
    root: str
    label_map: str
    frame: pd.DataFrame
    classes: tuple[str, ...]
    skipped: list[Skipped] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # raw label -> count, not in label map
    files: int = 0  # audio files (or label lines) the recipe looked at, usable or not
    warnings: list[str] = field(default_factory=list)  # what the reader changed, e.g. merged spellings

    def __post_init__(self) -> None:
        for col, fill in OPTIONAL.items():
            if col not in self.frame.columns:
                self.frame = self.frame.assign(**{col: fill})
        missing = [c for c in COLUMNS if c not in self.frame.columns]
        if missing:
            raise ValueError(f"manifest frame lacks columns {missing}")
        dupes = self.frame["utt_id"][self.frame["utt_id"].duplicated()]
        if len(dupes):
            raise ValueError(f"duplicate utt_id in {self.corpus} manifest: {sorted(dupes)[:5]}")
        self.frame = self.frame[COLUMNS].sort_values("utt_id").reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.frame)

    def content_hash(self) -> str:
        """sha256 of the rows that matter for results (ids, speakers, labels, durations).

        Paths are left out on purpose: the same corpus unpacked elsewhere hashes the same.
        """
        cols = ["utt_id", "corpus", "speaker", "session", "gender", "label", "raw_label", "duration"]
        payload = self.frame[cols].to_csv(index=False, float_format="%.4f")
        return hashlib.sha256(payload.encode()).hexdigest()

    def summary(self) -> dict:
        """Plain-data summary: counts per label / speaker / session, duration, skipped files."""
        f = self.frame
        reasons = Counter(s.reason.split(":")[0] for s in self.skipped)
        return {
            "corpus": self.corpus,
            "root": self.root,
            "label_map": self.label_map,
            "files": self.files,
            "utterances": int(len(f)),
            "classes": list(self.classes),
            "labels": {c: int((f["label"] == c).sum()) for c in self.classes},
            "speakers": int(f["speaker"].nunique()),
            "per_speaker": {k: int(v) for k, v in f["speaker"].value_counts().sort_index().items()},
            "sessions": int(f.loc[f["session"] != "", "session"].nunique()),
            "per_session": {
                k: int(v) for k, v in f.loc[f["session"] != "", "session"].value_counts().sort_index().items()
            },
            "genders": {k: int(v) for k, v in f["gender"].value_counts().sort_index().items()},
            "duration_hours": round(float(f["duration"].sum()) / 3600.0, 4),
            "dropped_by_label_map": dict(sorted(self.dropped.items())),
            "warnings": list(self.warnings),
            "skipped": len(self.skipped),
            "skipped_by_reason": dict(sorted(reasons.items())),
            "skipped_files": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "hash": self.content_hash(),
        }

    def to_json(self) -> str:
        return json.dumps(self.summary(), indent=2)
