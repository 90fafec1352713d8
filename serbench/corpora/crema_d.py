"""CREMA-D -> Manifest.

Audio is ``AudioWAV/{actor}_{sentence}_{EMO}_{level}.wav`` (actors 1001-1091, emotions
ANG DIS FEA HAP NEU SAD, levels LO MD HI XX). Gender comes from ``VideoDemographics.csv``
(``ActorID,Age,Sex,...``) when it is there. CREMA-D has no sessions. The real release is known to
contain at least one empty clip; it is reported as skipped like any other bad file.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from serbench.corpora.common import BadText, Entry, audio_files, build_manifest, read_text
from serbench.errors import SerbenchError
from serbench.manifest import Manifest, Skipped, normalise

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


def read_genders(root: Path) -> tuple[dict[str, str], list[Skipped]]:
    """ActorID -> 'F' / 'M' from VideoDemographics.csv, if present (else empty), and the file as
    skipped, with why, when it is there but cannot be read or lacks its columns (genders are then
    left empty: the corpus is still usable)."""
    csv_path = root / "VideoDemographics.csv"
    if not csv_path.is_file():
        return {}, []
    try:
        reader = csv.DictReader(io.StringIO(read_text(csv_path), newline=""))
        rows = [{normalise(k): normalise(v or "") for k, v in row.items() if k is not None} for row in reader]
    except (BadText, csv.Error) as exc:
        return {}, [Skipped(str(csv_path), f"not read, genders left empty: {exc}")]
    found = [normalise(c) for c in reader.fieldnames or []]
    if not {"ActorID", "Sex"} <= set(found):
        return {}, [Skipped(str(csv_path), f"not read, genders left empty: needs columns ActorID, Sex; "
                                           f"found {', '.join(map(repr, found)) or 'none'}")]
    genders = {}
    for row in rows:
        sex = row["Sex"].lower()
        if row["ActorID"] and sex in ("male", "female"):
            genders[row["ActorID"]] = "M" if sex == "male" else "F"
    return genders, []


def prepare(path: Path, label_map: str | None = None, progress: bool = True) -> Manifest:
    audio = find_audio(path)
    root = audio.parent
    genders, skipped = read_genders(root)
    entries = []
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
