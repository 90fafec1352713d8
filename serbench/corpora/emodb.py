"""EmoDB (Berlin Database of Emotional Speech) -> Manifest.

``wav/03a01Fa.wav``: speaker (2 digits), text (3), emotion letter (W anger, L boredom, E disgust,
A fear, F happiness, T sadness, N neutral), version (1). Speaker genders are fixed by the corpus
documentation.
"""
from __future__ import annotations

import re
from pathlib import Path

from serbench.corpora.common import Entry, audio_files, build_manifest
from serbench.errors import SerbenchError
from serbench.manifest import Manifest, Skipped

NAME = "emodb"
DEFAULT_LABEL_MAP = "emodb-4class"
FILE = re.compile(r"^(?P<speaker>\d\d)(?P<text>[a-z]\d\d)(?P<emo>[WLEAFTN])(?P<version>[a-z])$")
# what each raw label (the emotion letter) means, from the corpus documentation: for messages
RAW_LABELS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness",
              "N": "neutral"}
GENDER = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M",
          "12": "M", "13": "F", "14": "F", "15": "M", "16": "F"}


def prepare(path: Path, label_map: str | None = None, progress: bool = True) -> Manifest:
    root = Path(path)
    if not root.is_dir():
        raise SerbenchError(f"{root}: no such folder (expected an EmoDB folder holding wav/)")
    wav = root / "wav" if (root / "wav").is_dir() else None
    if wav is None:
        raise SerbenchError(f"{root}: not an EmoDB folder: expected wav/ under it")
    entries, skipped = [], []
    for f in audio_files(wav):
        m = FILE.match(f.stem)
        if not m:
            skipped.append(Skipped(str(f), "name not in EmoDB's 03a01Fa form"))
            continue
        entries.append(Entry(
            utt_id=f.stem, path=f, speaker=m["speaker"], raw_label=m["emo"],
            gender=GENDER.get(m["speaker"], ""),
        ))
    return build_manifest(NAME, root, entries, skipped, label_map or DEFAULT_LABEL_MAP, progress)
