"""RAVDESS (speech) -> Manifest.

``Actor_NN/03-01-EE-II-SS-RR-AA.wav`` (or ``.flac``, or any format libsndfile reads): modality,
vocal channel, emotion, intensity, statement, repetition, actor. Only audio-only speech (modality
03, channel 01) is used; song files are left out and counted. A code outside RAVDESS's range
(emotion 09) is skipped saying which field and the valid codes, and so are the files of a folder
not named ``Actor_NN`` (``Actor_2``, ``actor_03``: renamed folders are not guessed at). Odd
actors are male, even female. The default map counts calm as neutral (see
``registry/labelmaps/ravdess-4class.yaml`` for why).
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
ACTOR_LIKE = re.compile(r"^actor[\s_-]*(\d{1,2})$", re.IGNORECASE)  # Actor_2, actor_03, ACTOR 7
FIELDS = ("modality", "channel", "emotion", "intensity", "statement", "repetition", "actor")
FILE = re.compile(r"^" + "-".join(rf"(?P<{f}>\d\d)" for f in FIELDS) + r"$")
# the codes RAVDESS defines for each field (the actor must match its folder instead)
CODES = {"modality": range(1, 4), "channel": range(1, 3), "emotion": range(1, 9),
         "intensity": range(1, 3), "statement": range(1, 3), "repetition": range(1, 3)}
# what each raw label (the emotion code) means, from the corpus documentation: for messages
RAW_LABELS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
              "07": "disgust", "08": "surprised"}


def actor_dirs(path: Path) -> tuple[list[Path], list[Path]]:
    """The ``Actor_NN`` folders under ``path`` and the other folders that hold audio files
    (misnamed actor folders, whose files are listed as skipped rather than lost)."""
    path = Path(path)
    if not path.is_dir():
        raise SerbenchError(f"{path}: no such folder (expected a RAVDESS folder holding Actor_01 ..)")
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    dirs = [p for p in folders if ACTOR_DIR.match(p.name)]
    others = [p for p in folders if not ACTOR_DIR.match(p.name) and _holds_audio(p)]
    if not dirs:
        found = f" (found {', '.join(p.name for p in others)}: not in the Actor_NN form)" if others else ""
        raise SerbenchError(f"{path}: not a RAVDESS folder: expected Actor_01 .. Actor_24 under it{found}")
    return dirs, others


def _holds_audio(folder: Path) -> bool:
    try:
        return bool(audio_files(folder))
    except SerbenchError:  # an unreadable folder not named like an actor's (lost+found): not RAVDESS's
        return False


def bad_codes(m: re.Match) -> str | None:
    """What is out of range in a parsed file name (a skip reason), or None."""
    wrong = [f"{f} code {m[f]} unknown (RAVDESS codes {min(r):02d}-{max(r):02d})"
             for f, r in CODES.items() if int(m[f]) not in r]
    return "; ".join(wrong) or None


def prepare(path: Path, label_map: str | None = None, progress: bool = True) -> Manifest:
    root = Path(path)
    entries, skipped = [], []
    dirs, others = actor_dirs(root)
    for folder in others:
        like = ACTOR_LIKE.match(folder.name)
        rename = f"rename it Actor_{int(like[1]):02d}" if like else "rename it if it is an actor's"
        why = (f"in folder {folder.name}, which is not named Actor_NN (two digits, e.g. Actor_01): "
               f"not read; {rename}")
        skipped += [Skipped(str(f), why) for f in audio_files(folder)]
    for folder in dirs:
        for f in audio_files(folder):
            m = FILE.match(f.stem)
            if not m:
                skipped.append(Skipped(str(f), "name not in RAVDESS's 03-01-EE-II-SS-RR-AA form"))
                continue
            if m["actor"] != folder.name[-2:]:
                skipped.append(Skipped(str(f), f"actor {m['actor']} in name but file is in {folder.name}"))
                continue
            wrong = bad_codes(m)
            if wrong:
                skipped.append(Skipped(str(f), wrong))
                continue
            if (m["modality"], m["channel"]) != ("03", "01"):
                skipped.append(Skipped(str(f), "not audio-only speech (modality 03, channel 01)"))
                continue
            actor = int(m["actor"])
            entries.append(Entry(
                utt_id=f.stem, path=f, speaker=f"Actor_{m['actor']}", raw_label=m["emotion"],
                gender="M" if actor % 2 else "F",
            ))
    return build_manifest(NAME, root, entries, skipped, label_map or DEFAULT_LABEL_MAP, progress)
