"""What every corpus recipe shares: reading text and audio files and assembling the Manifest.

A recipe only knows its corpus's layout and naming; it yields one :class:`Entry` per audio file it
can parse (or a :class:`Skipped` for a name it cannot), and :func:`build_manifest` checks each file
is real audio, normalises its strings, drops copies of the same audio, applies the label map, and
records every file it had to leave out with a reason. Every text file a recipe reads (label
files, demographics, manifest CSVs) goes through :func:`read_text`.
"""
from __future__ import annotations

import codecs
import errno
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import soundfile as sf
from tqdm import tqdm

from serbench import labels
from serbench.audio import header_problem, sample_problem, truncation_message, wav_truncation
from serbench.errors import SerbenchError
from serbench.manifest import COLUMNS, Manifest, Skipped, audio_hash, normalise


# libsndfile's major formats and the extensions their files carry, in order of preference: .wav
# first (the format the corpora are released in), then .flac, the other lossless ones, the lossy ones
LIBSNDFILE_SUFFIXES = (
    ("WAV", ".wav"), ("FLAC", ".flac"), ("AIFF", ".aiff"), ("AIFF", ".aif"), ("AIFF", ".aifc"),
    ("CAF", ".caf"), ("W64", ".w64"), ("RF64", ".rf64"), ("AU", ".au"), ("AU", ".snd"),
    ("NIST", ".sph"), ("NIST", ".nist"), ("IRCAM", ".sf"), ("VOC", ".voc"),
    ("OGG", ".ogg"), ("OGG", ".oga"), ("OGG", ".opus"), ("MP3", ".mp3"),
)
# audio libsndfile never reads (containers and codecs of other libraries)
OTHER_AUDIO_SUFFIXES = (".m4a", ".aac", ".alac", ".wma", ".mp4", ".webm", ".mka", ".amr", ".3gp", ".ape",
                        ".wv", ".ac3", ".mp2", ".mpc")


def _readable_suffixes() -> tuple[str, ...]:
    """The extensions of :data:`LIBSNDFILE_SUFFIXES` whose format this machine's libsndfile has
    (``soundfile.available_formats()``; ``.opus`` only when its OGG has the Opus subtype)."""
    formats = sf.available_formats()
    opus = "OGG" in formats and "OPUS" in sf.available_subtypes("OGG")
    return tuple(ext for fmt, ext in LIBSNDFILE_SUFFIXES if fmt in formats and (ext != ".opus" or opus))


AUDIO_SUFFIXES = _readable_suffixes()
# audio that cannot be decoded here: listed as skipped with the reason, never silently ignored
UNREADABLE_SUFFIXES = tuple(
    ext for ext in (*(e for _, e in LIBSNDFILE_SUFFIXES), *OTHER_AUDIO_SUFFIXES) if ext not in AUDIO_SUFFIXES)


def format_problem(path: Path) -> str | None:
    """Why ``path``'s audio format cannot be decoded here (a skip reason), or None."""
    suffix = path.suffix.lower()
    if suffix not in UNREADABLE_SUFFIXES:
        return None
    return (f"{suffix} audio is not decoded by this libsndfile ({sf.__libsndfile_version__}; it reads "
            f"{' '.join(AUDIO_SUFFIXES)}): convert it, e.g. to .flac")


class BadText(Exception):
    """A text file that cannot be read or decoded; the message says why."""


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_text(path: Path) -> str:
    """The text of ``path``, decoded by its byte-order mark: UTF-8 (with or without a BOM),
    UTF-16 or UTF-32 with one, else :class:`BadText` saying why.

    Editors on Windows save "Unicode" text as UTF-16 with a BOM; decoding that as UTF-8 (with
    errors replaced) turns every line into NUL-riddled text that no pattern matches, so a label
    file's utterances vanished without a trace. UTF-16 without a BOM is refused by name (NUL
    bytes in text), and bytes that are not UTF-8 are refused with their offset, not replaced.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadText(f"cannot read file: {exc.strerror}") from exc
    codec = next((c for bom, c in _BOMS if data.startswith(bom)), None)
    if codec is None and b"\x00" in data:
        raise BadText("not text: it holds NUL bytes (UTF-16 without a byte-order mark?); save it as UTF-8")
    try:
        return data.decode(codec or "utf-8")
    except UnicodeDecodeError as exc:
        raise BadText(f"cannot decode as {codec or 'UTF-8'}: byte 0x{data[exc.start]:02x} at offset "
                      f"{exc.start}; save it as UTF-8") from exc


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
    """Normalise each entry's strings, probe its audio, map its label, and assemble the Manifest.

    Two entries with the same bytes under different ids are one recording: the first is kept and
    the other listed as a duplicate, so that no clip can be in both training and test data.
    """
    lmap = label_map if isinstance(label_map, labels.LabelMap) else labels.load(label_map)
    files = len(entries) + len(skipped)  # before probing adds the unreadable entries to skipped
    entries, warnings = normalise_entries(entries)
    skipped = list(skipped)
    dropped: dict[str, int] = {}
    rows = []
    kept: dict[str, Path] = {}  # utt_id -> the file used for it
    by_hash: dict[str, Entry] = {}  # audio hash -> the entry kept for those bytes
    for e in tqdm(prefer_formats(entries), desc=f"scanning {corpus}", unit="file", disable=not progress,
                  leave=False):
        if e.utt_id in kept:
            first = kept[e.utt_id]
            skipped.append(Skipped(str(e.path), (
                f"duplicate: {first.name} is the same utterance ({e.utt_id}) and is used instead"
                + (f" ({first.suffix.lower()} is preferred over {e.path.suffix.lower()})"
                   if first.suffix.lower() != e.path.suffix.lower() else ""))))
            continue
        why = format_problem(e.path)
        if why is None:
            try:
                duration, sr = probe_audio(e.path)
            except BadAudio as exc:
                why = str(exc)
        if why is not None:
            skipped.append(Skipped(str(e.path), why))
            continue
        kept[e.utt_id] = e.path
        label = lmap(e.raw_label)
        if label is None:
            dropped[e.raw_label] = dropped.get(e.raw_label, 0) + 1
            continue
        try:
            digest = audio_hash(e.path)
        except OSError as exc:
            skipped.append(Skipped(str(e.path), f"cannot read file: {exc.strerror}"))
            continue
        if digest in by_hash:
            skipped.append(Skipped(str(e.path), same_audio(by_hash[digest], e)))
            continue
        by_hash[digest] = e
        rows.append({
            "utt_id": e.utt_id, "path": str(e.path), "corpus": corpus, "speaker": e.speaker,
            "session": e.session, "gender": e.gender, "label": label, "raw_label": e.raw_label,
            "duration": round(duration, 6), "sample_rate": sr, "audio_hash": digest,
        })
    frame = pd.DataFrame(rows, columns=COLUMNS)
    classes = lmap.classes or tuple(sorted(frame["label"].unique()))
    return Manifest(
        corpus=corpus, root=str(root), label_map=lmap.name, frame=frame, classes=tuple(classes),
        skipped=sorted(skipped, key=lambda s: s.path), dropped=dropped,
        files=files, warnings=warnings,
    )


def same_audio(first: Entry, e: Entry) -> str:
    """The skip reason of ``e``, whose audio has the same bytes as ``first``'s (kept)."""
    where = "the same file" if Path(first.path) == Path(e.path) else f"the same bytes as {first.path}"
    why = f"duplicate audio: {where}, kept once as {first.utt_id} ({e.utt_id} left out)"
    if first.raw_label != e.raw_label:
        why += f"; labelled {first.raw_label!r} there and {e.raw_label!r} here"
    return why


# Entry fields whose strings are normalised, and what a warning calls them
NORMALISED = {"utt_id": "utterance id", "speaker": "speaker", "session": "session", "gender": "gender",
              "raw_label": "label"}


def normalise_entries(entries: list[Entry]) -> tuple[list[Entry], list[str]]:
    """``entries`` with every string field in :func:`serbench.manifest.normalise`'s form, and a
    warning for each set of distinct raw spellings that became one value (``"angry"`` and
    ``"angry "`` are one class now, and the user is told) and for labels or speakers that differ
    only in case (kept apart, but said)."""
    spellings: dict[str, dict[str, set[str]]] = {f: {} for f in NORMALISED}
    out = []
    for e in entries:
        values = {f: normalise(getattr(e, f)) for f in NORMALISED}
        for f, v in values.items():
            spellings[f].setdefault(v, set()).add(getattr(e, f))
        out.append(replace(e, **values))
    warnings = []
    for f, groups in spellings.items():
        for value, raws in sorted(groups.items()):
            if len(raws) > 1 and f != "utt_id":  # ids that merge are listed as duplicates instead
                warnings.append(f"{NORMALISED[f]}s {', '.join(map(repr, sorted(raws)))} are read as one "
                                f"{NORMALISED[f]} {value!r} (surrounding spaces stripped, Unicode NFC)")
    for f in ("raw_label", "speaker"):
        cases: dict[str, list[str]] = {}
        for value in sorted(spellings[f]):
            cases.setdefault(value.casefold(), []).append(value)
        warnings += [f"{NORMALISED[f]}s {', '.join(map(repr, vs))} differ only in case: kept as "
                     f"{len(vs)} {NORMALISED[f]}s" for vs in cases.values() if len(vs) > 1]
    return out, warnings


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
    loop is listed too, so that the scan reports it (:func:`file_problem`) instead of losing it;
    and audio this libsndfile cannot decode (:data:`UNREADABLE_SUFFIXES`), so that it is counted
    as skipped (:func:`format_problem`). Other files (``.txt``, ``.DS_Store``) are not audio."""
    suffixes = AUDIO_SUFFIXES + UNREADABLE_SUFFIXES
    try:
        names = list(folder.iterdir())
    except OSError as exc:
        raise SerbenchError(f"{folder}: cannot list the folder: {exc.strerror}") from exc
    return sorted(p for p in names if p.suffix.lower() in suffixes and not p.name.startswith("._"))
