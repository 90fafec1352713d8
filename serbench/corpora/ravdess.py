"""RAVDESS (speech) -> Manifest.

``Actor_XX/03-01-EE-II-SS-RR-AA.wav`` (or ``.flac``): modality, vocal channel, emotion, intensity,
statement, repetition, actor. Only audio-only speech (modality 03, channel 01) is used; song
files are left out and counted. Odd actors are male, even female. The default map counts calm
as neutral (see ``registry/labelmaps/ravdess-4class.yaml`` for why).
"""
from __future__ import annotations

import re
from pathlib import Path

from serbench.corpora.common import Entry, audio_files, build_manifest
from serbench.errors import SerbenchError
from serbench.manifest import Manifest, Skipped

NAME = "ravdess"
DEFAULT_LABEL_MAP = "ravdess-4class"
ACTOR_DIR = re.compile(r"^Actor_(\d\d)$")
FILE = re.compile(
    r"^(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<emo>0[1-8])-(?P<intensity>0[12])-"
    r"(?P<statement>0[12])-(?P<rep>0[12])-(?P<actor>\d\d)$"
)


def actor_dirs(path: Path) -> list[Path]:
    path = Path(path)
    if not path.is_dir():
        raise SerbenchError(f"{path}: no such folder (expected a RAVDESS folder holding Actor_01 ..)")
    dirs = sorted(p for p in path.iterdir() if p.is_dir() and ACTOR_DIR.match(p.name))
    if not dirs:
        raise SerbenchError(f"{path}: not a RAVDESS folder: expected Actor_01 .. Actor_24 under it")
    return dirs


def prepare(path: Path, label_map: str | None = None, progress: bool = True) -> Manifest:
    root = Path(path)
    entries, skipped = [], []
    for folder in actor_dirs(root):
        for f in audio_files(folder):
            m = FILE.match(f.stem)
            if not m:
                skipped.append(Skipped(str(f), "name not in RAVDESS's 03-01-EE-II-SS-RR-AA form"))
                continue
            if m["actor"] != folder.name[-2:]:
                skipped.append(Skipped(str(f), f"actor {m['actor']} in name but file is in {folder.name}"))
                continue
            if (m["modality"], m["channel"]) != ("03", "01"):
                skipped.append(Skipped(str(f), "not audio-only speech (modality 03, channel 01)"))
                continue
            actor = int(m["actor"])
            entries.append(Entry(
                utt_id=f.stem, path=f, speaker=f"Actor_{m['actor']}", raw_label=m["emo"],
                gender="M" if actor % 2 else "F",
            ))
    return build_manifest(NAME, root, entries, skipped, label_map or DEFAULT_LABEL_MAP, progress)
