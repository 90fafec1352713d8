"""A generic manifest CSV -> Manifest, so any corpus can be benchmarked without a recipe.

Columns: ``path`` (relative to the CSV's folder, or absolute), ``speaker``, ``label``; optional
``session``, ``gender``, ``utt_id`` (default: the path without suffix), ``corpus`` (default: the
CSV's file name without suffix; ``serbench run`` names it by the protocol's corpus instead). The
text is decoded by its byte-order mark (UTF-8, or UTF-16 as Excel's "Unicode text" saves it);
the separator is a comma, or the one of ``; TAB |`` that splits the header into the required
columns; header names and paths are stripped of surrounding spaces (speakers, labels and the
rest are normalised, with a warning when that merges spellings, by
:func:`~serbench.corpora.common.build_manifest`, as for every corpus).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from serbench.corpora.common import BadText, Entry, build_manifest, read_text
from serbench.errors import SerbenchError
from serbench.manifest import Manifest, Skipped, normalise

NAME = "manifest"
DEFAULT_LABEL_MAP = "identity"
REQUIRED = ("path", "speaker", "label")
OPTIONAL = ("session", "gender", "utt_id", "corpus")
SEPARATORS = (",", ";", "\t", "|")


def header_names(line: str, sep: str) -> list[str]:
    return [normalise(c) for c in next(csv.reader([line], delimiter=sep), [])]


def separator(header: str) -> str:
    """The separator that gives the header every required column; else the one that splits it
    into the most fields (the comma on a tie), so that an error can show the columns found."""
    for sep in SEPARATORS:
        if set(REQUIRED) <= set(header_names(header, sep)):
            return sep
    return max(SEPARATORS, key=lambda sep: len(header_names(header, sep)))


def read_table(csv_path: Path) -> pd.DataFrame:
    """The CSV as a table of strings under normalised column names, or a :class:`SerbenchError`
    naming the file and, for a missing column, the columns found and how they were split."""
    try:
        text = read_text(csv_path)
    except BadText as exc:
        raise SerbenchError(f"{csv_path}: {exc}") from exc
    header = next(iter(text.splitlines()), "")
    sep = separator(header)
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SerbenchError(f"{csv_path}: not a readable CSV: {exc}") from exc
    names = header_names(header, sep)
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise SerbenchError(f"{csv_path}: column(s) {', '.join(map(repr, twice))} given twice")
    table.columns = names
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        shown = {",": "comma", ";": "';'", "\t": "tab", "|": "'|'"}[sep]
        how = (f"it looks {shown}-separated" if sep != "," else
               "one column: is it separated by spaces? use commas" if len(names) == 1 else "comma-separated")
        raise SerbenchError(
            f"{csv_path}: missing column(s) {', '.join(missing)} (needs {', '.join(REQUIRED)}; optional "
            f"{', '.join(OPTIONAL)}); columns found: {', '.join(map(repr, names)) or 'none'} ({how})")
    return table


def prepare(path: Path, label_map: str | None = None, progress: bool = True,
            corpus: str | None = None) -> Manifest:
    """Read the manifest CSV at ``path``; ``corpus`` names the corpus (over the CSV's ``corpus``
    column and its file name)."""
    csv_path = Path(path)
    if not csv_path.is_file():
        raise SerbenchError(f"{csv_path}: no such file (expected a manifest CSV with columns "
                            f"{', '.join(REQUIRED)})")
    table = read_table(csv_path)
    named = sorted({normalise(c) for c in table.get("corpus", [])} - {""})
    if corpus is None and len(named) > 1:
        raise SerbenchError(f"{csv_path}: column corpus names {len(named)} corpora ({', '.join(named[:5])}); "
                            "a manifest CSV is one corpus: split it into one CSV per corpus")
    corpus = corpus or (named[0] if named else csv_path.stem)
    entries, skipped, seen = [], [], set()
    for i, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        where = f"{csv_path}:{i}"
        rel = row["path"].strip()
        if not rel or not normalise(row["speaker"]) or not normalise(row["label"]):
            skipped.append(Skipped(where, "empty path, speaker or label"))
            continue
        audio = Path(rel) if Path(rel).is_absolute() else csv_path.parent / rel
        utt = normalise(row.get("utt_id") or Path(rel).with_suffix("").as_posix())
        if utt in seen:
            skipped.append(Skipped(where, f"duplicate utt_id {utt!r}"))
            continue
        seen.add(utt)
        entries.append(Entry(
            utt_id=utt, path=audio, speaker=row["speaker"], raw_label=row["label"],
            session=row.get("session", ""), gender=row.get("gender", ""),
        ))
    return build_manifest(corpus, csv_path.parent, entries, skipped, label_map or DEFAULT_LABEL_MAP,
                          progress)
