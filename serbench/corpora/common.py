"""What every corpus recipe shares: probing audio files and assembling the Manifest.

A recipe only knows its corpus's layout and naming; it yields one :class:`Entry` per audio file it
can parse (or a :class:`Skipped` for a name it cannot), and :func:`build_manifest` checks each file
is real audio, applies the label map, and records every file it had to leave out with a reason.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import soundfile as sf
from tqdm import tqdm

from serbench import labels
from serbench.audio import header_problem, sample_problem, truncation_message, wav_truncation
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


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable regular file (a skip reason), or None when it is one."""
    try:
        st = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop: the path resolves to itself (too many levels of symbolic links)"
        if exc.errno == errno.ENOENT and path.is_symlink():
            return f"broken symlink: points to {os.readlink(path)}, which does not exist"
        if exc.errno == errno.ENOENT:
            return "audio missing: no such file"
        return f"cannot read file: {exc.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not an audio file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return f"cannot read file: {exc.strerror}"
    return None


def probe_audio(path: Path) -> tuple[float, int]:
    """Duration (s) and sample rate of ``path`` from its header, or :class:`BadAudio`.

    The header is checked first (:func:`serbench.audio.header_problem`: a sample rate or length
    no clip has is refused before decoding). Beyond it: a WAV's data chunk is checked against the
    file size (truncated copies), any other format must seek to its last frame (a cut-short FLAC
    fails there), and the samples are decoded once, block by block, for NaN/inf and silence
    (:func:`serbench.audio.sample_problem`).
    """
    problem = file_problem(path) or header_problem(path)
    if problem:
        raise BadAudio(problem)
    try:
        with sf.SoundFile(str(path)) as f:
            frames, samplerate, fmt = f.frames, f.samplerate, f.format
            if frames <= 0 or samplerate <= 0:
                raise BadAudio("no audio frames (zero-length audio)")
            if fmt != "WAV":
                try:
                    f.seek(frames - 1)
                    got = len(f.read(1))
                except (sf.LibsndfileError, RuntimeError) as exc:
                    got, why = 0, str(exc)
                else:
                    why = "no frame there"
                if got != 1:
                    raise BadAudio(f"truncated or corrupt: header says {frames} frames, "
                                   f"cannot read the last one ({why})")
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise BadAudio(f"not readable audio: {exc}") from exc
    short = wav_truncation(path)
    if short is not None:
        raise BadAudio(truncation_message(*short))
    try:
        problem = sample_problem(path)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise BadAudio(f"not readable audio: {exc}") from exc
    if problem:
        raise BadAudio(problem)
    return frames / samplerate, int(samplerate)


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
    kept: dict[str, Path] = {}  # utt_id -> the file used for it
    for e in tqdm(prefer_formats(entries), desc=f"scanning {corpus}", unit="file", disable=not progress,
                  leave=False):
        if e.utt_id in kept:
            first = kept[e.utt_id]
            skipped.append(Skipped(str(e.path), (
                f"duplicate: {first.name} is the same utterance ({e.utt_id}) and is used instead"
                + (f" ({first.suffix.lower()} is preferred: {' > '.join(AUDIO_SUFFIXES)})"
                   if first.suffix.lower() != e.path.suffix.lower() else ""))))
            continue
        try:
            duration, sr = probe_audio(e.path)
        except BadAudio as exc:
            skipped.append(Skipped(str(e.path), str(exc)))
            continue
        kept[e.utt_id] = e.path
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


def prefer_formats(entries: list[Entry]) -> list[Entry]:
    """``entries`` with those sharing an utt_id ordered by format preference.

    One utterance can be on disk twice (``X.wav`` beside a converted ``X.flac``). The scan keeps
    the first of them that is usable audio, in the order of :data:`AUDIO_SUFFIXES` (``.wav``
    first: the format the corpora are released in) and then by name, and lists the others as
    duplicates; an unusable ``.wav`` is skipped for its own reason and the ``.flac`` used.
    Entries with unique ids keep their order.
    """
    rank = {s: i for i, s in enumerate(AUDIO_SUFFIXES)}
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.utt_id, []).append(e)
    out = []
    for e in entries:
        group = groups.pop(e.utt_id, None)
        if group is not None:
            out += sorted(group, key=lambda g: (rank.get(g.path.suffix.lower(), len(rank)), g.path.name))
    return out


def audio_files(folder: Path) -> list[Path]:
    """Names with an audio suffix directly in ``folder`` (sorted), ignoring macOS ``._`` resource
    forks. Not only regular files: a directory called ``x.wav``, a broken symlink or a symlink
    loop is listed too, so that the scan reports it (:func:`file_problem`) instead of losing it."""
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("._")
    )
