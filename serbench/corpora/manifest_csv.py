"""A generic manifest CSV -> Manifest, so any corpus can be benchmarked without a recipe.

Columns: ``path`` (relative to the CSV's folder, or absolute), ``speaker``, ``label``; optional
``session``, ``gender``, ``utt_id`` (default: the path without suffix), ``corpus`` (default: the
CSV's file name without suffix).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from serbench.corpora.common import Entry, build_manifest
from serbench.errors import SerbenchError
from serbench.manifest import Manifest, Skipped

NAME = "manifest"
DEFAULT_LABEL_MAP = "identity"
REQUIRED = ("path", "speaker", "label")


def prepare(path: Path, label_map: str | None = None, progress: bool = True) -> Manifest:
    csv_path = Path(path)
    if not csv_path.is_file():
        raise SerbenchError(f"{csv_path}: no such file (expected a manifest CSV with columns "
                            f"{', '.join(REQUIRED)})")
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SerbenchError(f"{csv_path}: not a readable CSV: {exc}") from exc
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise SerbenchError(f"{csv_path}: missing column(s) {', '.join(missing)} "
                            f"(needs {', '.join(REQUIRED)}; optional session, gender, utt_id, corpus)")
    corpus = csv_path.stem
    entries, skipped, seen = [], [], set()
    for i, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        where = f"{csv_path}:{i}"
        if not row["path"] or not row["speaker"] or not row["label"]:
            skipped.append(Skipped(where, "empty path, speaker or label"))
            continue
        audio = Path(row["path"])
        audio = audio if audio.is_absolute() else csv_path.parent / audio
        utt = row.get("utt_id") or Path(row["path"]).with_suffix("").as_posix()
        if utt in seen:
            skipped.append(Skipped(where, f"duplicate utt_id {utt!r}"))
            continue
        seen.add(utt)
        corpus = row.get("corpus") or corpus
        entries.append(Entry(
            utt_id=utt, path=audio, speaker=row["speaker"], raw_label=row["label"],
            session=row.get("session", ""), gender=row.get("gender", ""),
        ))
    return build_manifest(corpus, csv_path.parent, entries, skipped, label_map or DEFAULT_LABEL_MAP,
                          progress)
