"""CREMA-D -> Manifest.

Audio is ``AudioWAV/{actor}_{sentence}_{EMO}_{level}.wav`` (actors 1001-1091, emotions
ANG DIS FEA HAP NEU SAD, levels LO MD HI XX). Gender comes from ``VideoDemographics.csv``
(``ActorID,Age,Sex,...``) when it is there. CREMA-D has no sessions. The real release is known to
contain at least one empty clip; it is reported as skipped like any other bad file.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from serbench.corpora.common import Entry, audio_files, build_manifest
from serbench.errors import SerbenchError
from serbench.manifest import Manifest, Skipped

NAME = "crema-d"
DEFAULT_LABEL_MAP = "crema-d-4class"
FILE = re.compile(r"^(?P<actor>1\d{3})_(?P<sentence>[A-Z]{3})_(?P<emo>[A-Z]{3})_(?P<level>[A-Z]{2})$")


def find_audio(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise SerbenchError(f"{path}: no such folder (expected a CREMA-D folder holding AudioWAV/)")
    if (path / "AudioWAV").is_dir():
        return path / "AudioWAV"
    if path.name == "AudioWAV":
        return path
    raise SerbenchError(f"{path}: not a CREMA-D folder: expected AudioWAV/ under it")


def read_genders(root: Path) -> dict[str, str]:
    """ActorID -> 'F' / 'M' from VideoDemographics.csv, if present (else empty)."""
    csv_path = root / "VideoDemographics.csv"
    if not csv_path.is_file():
        return {}
    genders = {}
    with csv_path.open(newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.DictReader(fh):
            sex = (row.get("Sex") or "").strip().lower()
            if row.get("ActorID") and sex in ("male", "female"):
                genders[row["ActorID"].strip()] = "M" if sex == "male" else "F"
    return genders


def prepare(path: Path, label_map: str | None = None, progress: bool = True) -> Manifest:
    audio = find_audio(path)
    root = audio.parent
    genders = read_genders(root)
    entries, skipped = [], []
    for f in audio_files(audio):
        m = FILE.match(f.stem)
        if not m:
            skipped.append(Skipped(str(f), "name not in CREMA-D's {actor}_{sentence}_{EMO}_{level} form"))
            continue
        entries.append(Entry(
            utt_id=f.stem, path=f, speaker=m["actor"], raw_label=m["emo"],
            gender=genders.get(m["actor"], ""),
        ))
    return build_manifest(NAME, root, entries, skipped, label_map or DEFAULT_LABEL_MAP, progress)
