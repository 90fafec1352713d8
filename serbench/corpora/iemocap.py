"""IEMOCAP (``IEMOCAP_full_release/``) -> Manifest.

Labels come from ``Session{1..5}/dialog/EmoEvaluation/*.txt``: one line per turn,
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``; the annotator
lines (``C-E2: ...``) and the sub-folders (``Categorical/``, ``Attribute/``, ``Self-evaluation/``)
are ignored. Audio is ``Session{n}/sentences/wav/<dialog>/<utt>.wav``. IEMOCAP has two speakers
per session; the speaker of a turn is the gender letter of the utterance id's last part
(``Ses01F_impro01_M003`` is session 1's male speaker), not the dialog's first letter.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from serbench.corpora.common import BadText, Entry, build_manifest, read_text
from serbench.errors import SerbenchError
from serbench.manifest import Manifest, Skipped

NAME = "iemocap"
DEFAULT_LABEL_MAP = "iemocap-4class"
SESSIONS = [f"Session{n}" for n in range(1, 6)]
LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(?P<utt>\S+)\t(?P<label>\S+)\t\[")
UTT = re.compile(r"^Ses(?P<session>\d\d)[FM]_.+_(?P<gender>[FM])\d+$")
# a line meant as a turn's label: it opens with a time bracket or names an utterance id
TURN_LIKE = re.compile(r"^\s*\[\s*[\d.]|(^|\s)Ses\d\d[FM]_\S*_[FM]\d+(\s|$)")
TIME = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]")


def find_root(path: Path) -> Path:
    """Accept the release folder itself or a folder that contains ``IEMOCAP_full_release``."""
    path = Path(path)
    if not path.is_dir():
        raise SerbenchError(f"{path}: no such folder (expected IEMOCAP_full_release/)")
    for candidate in (path, path / "IEMOCAP_full_release"):
        if all((candidate / s).is_dir() for s in SESSIONS):
            return candidate
    found = [s for s in SESSIONS if (path / s).is_dir()]
    raise SerbenchError(
        f"{path}: not an IEMOCAP release: expected Session1 .. Session5 under it "
        f"(found {', '.join(found) or 'none'}); point at IEMOCAP_full_release/"
    )


def malformed(line: str) -> str:
    """What is wrong with a turn-like line that :data:`LINE` does not match."""
    fields = line.strip().split("\t")
    if not TIME.match(line.strip()):
        what = "no [START - END] time bracket at the start"
    elif "\t" not in line:
        what = "fields separated by spaces, not tabs"
    elif len(fields) < 4 or not fields[3].strip().startswith("["):
        what = "no [V, A, D] bracket after the label"
    else:
        what = "not in the form [START - END]<TAB>TURN_NAME<TAB>EMOTION<TAB>[V, A, D]"
    return f"malformed label line: {what}; the line is {line.strip()!r}"


def parse_labels(root: Path) -> tuple[dict[str, str], list[Skipped]]:
    """utt_id -> raw label from every ``EmoEvaluation/*.txt`` of every session.

    Nothing is dropped without a trace: a line that looks like a turn's label but is not in
    IEMOCAP's format is listed as ``file:line`` with what is wrong with it, a file that cannot be
    decoded (:func:`~serbench.corpora.common.read_text` reads UTF-8, and UTF-16 with a byte-order
    mark as Windows editors save it) is listed with why, and an utterance labelled differently
    in two places is listed with every place and label and left out (its label is unknown). The
    same label given twice is kept.
    """
    seen: dict[str, list[tuple[str, str]]] = {}  # utt -> [(file:line, label)]
    bad: list[Skipped] = []
    for session in SESSIONS:
        folder = root / session / "dialog" / "EmoEvaluation"
        if not folder.is_dir():
            raise SerbenchError(f"{folder}: missing (IEMOCAP label files live there)")
        for txt in sorted(folder.glob("*.txt")):
            if txt.name.startswith("._"):
                continue
            try:
                text = read_text(txt)
            except BadText as exc:
                bad.append(Skipped(str(txt), f"label file not read, its utterances are left out: {exc}"))
                continue
            for number, line in enumerate(text.splitlines(), start=1):
                m = LINE.match(line)
                if m:
                    seen.setdefault(m["utt"], []).append((f"{txt}:{number}", m["label"]))
                elif TURN_LIKE.search(line):
                    bad.append(Skipped(f"{txt}:{number}", malformed(line)))
    found: dict[str, str] = {}
    for utt, places in seen.items():
        if len({label for _, label in places}) == 1:
            found[utt] = places[0][1]
            continue
        where = ", ".join(f"{label!r} at {place}" for place, label in places)
        bad.append(Skipped(places[0][0], f"conflicting labels: {utt} is {where}; "
                                         "left out (its label is unknown)"))
    return found, bad
def prepare(path: Path, label_map: str | None = None, progress: bool = True) -> Manifest:
    root = find_root(path)
    raw_labels, skipped = parse_labels(root)
    entries: list[Entry] = []
    for utt, raw in sorted(raw_labels.items()):
        m = UTT.match(utt)
        if not m:
            skipped.append(Skipped(utt, "utterance id not in IEMOCAP's SesNN?_..._?NNN form"))
            continue
        dialog = utt.rsplit("_", 1)[0]
        session = int(m["session"])
        wav = root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utt}.wav"
        if not os.path.lexists(wav):  # anything else there (a folder, a symlink loop) is probed
            skipped.append(Skipped(str(wav), "audio missing: labelled in EmoEvaluation but no wav"))
            continue
        entries.append(Entry(
            utt_id=utt, path=wav, speaker=f"Ses{m['session']}{m['gender']}", raw_label=raw,
            session=f"Ses{m['session']}", gender=m["gender"],
        ))
    return build_manifest(NAME, root, entries, skipped, label_map or DEFAULT_LABEL_MAP, progress)
