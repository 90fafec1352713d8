"""What every corpus recipe shares: probing audio files and assembling the Manifest.

A recipe only knows its corpus's layout and naming; it yields one :class:`Entry` per audio file it
can parse (or a :class:`Skipped` for a name it cannot), and :func:`build_manifest` checks each file
is real audio, applies the label map, and records every file it had to leave out with a reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import soundfile as sf
from tqdm import tqdm

from serbench import labels
from serbench.manifest import COLUMNS, Manifest, Skipped

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class Entry:
    utt_id: str
    path: Path
    speaker: str
    raw_label: str
    session: str = ""
    gender: str = ""


class BadAudio(Exception):
    """The file is not usable audio; the message says why."""


def probe_audio(path: Path) -> tuple[float, int]:
    """Duration (s) and sample rate of ``path`` from its header, or :class:`BadAudio`.

    Reading the header (not the samples) keeps a 10,000-file corpus scan to seconds; the samples
    are decoded later, and a file whose data turns out unreadable then is reported at that point.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadAudio(f"cannot read file: {exc.strerror}") from exc
    if size == 0:
        raise BadAudio("empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise BadAudio(f"not readable audio: {exc}") from exc
    if info.frames <= 0 or info.samplerate <= 0:
        raise BadAudio("no audio frames (zero-length audio)")
    return info.frames / info.samplerate, int(info.samplerate)


def build_manifest(
    corpus: str,
    root: Path,
    entries: list[Entry],
    skipped: list[Skipped],
    label_map: str | labels.LabelMap,
    progress: bool = True,
) -> Manifest:
    """Probe each entry's audio, map its label, and assemble the Manifest."""
    lmap = label_map if isinstance(label_map, labels.LabelMap) else labels.load(label_map)
    files = len(entries) + len(skipped)  # before probing adds the unreadable entries to skipped
    skipped = list(skipped)
    dropped: dict[str, int] = {}
    rows = []
    for e in tqdm(entries, desc=f"scanning {corpus}", unit="file", disable=not progress, leave=False):
        try:
            duration, sr = probe_audio(e.path)
        except BadAudio as exc:
            skipped.append(Skipped(str(e.path), str(exc)))
            continue
        label = lmap(e.raw_label)
        if label is None:
            dropped[e.raw_label] = dropped.get(e.raw_label, 0) + 1
            continue
        rows.append({
            "utt_id": e.utt_id, "path": str(e.path), "corpus": corpus, "speaker": e.speaker,
            "session": e.session, "gender": e.gender, "label": label, "raw_label": e.raw_label,
            "duration": round(duration, 6), "sample_rate": sr,
        })
    frame = pd.DataFrame(rows, columns=COLUMNS)
    classes = lmap.classes or tuple(sorted(frame["label"].unique()))
    return Manifest(
        corpus=corpus, root=str(root), label_map=lmap.name, frame=frame, classes=tuple(classes),
        skipped=sorted(skipped, key=lambda s: s.path), dropped=dropped,
        files=files,
    )


def audio_files(folder: Path) -> list[Path]:
    """Audio files directly in ``folder`` (sorted), ignoring macOS ``._`` resource forks."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("._")
    )
