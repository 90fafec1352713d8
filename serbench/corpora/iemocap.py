"""IEMOCAP (``IEMOCAP_full_release/``) -> Manifest.

Labels come from ``Session{1..5}/dialog/EmoEvaluation/*.txt``: one line per turn,
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``; the annotator
lines (``C-E2: ...``) and the sub-folders (``Categorical/``, ``Attribute/``, ``Self-evaluation/``)
are ignored. Audio is ``Session{n}/sentences/wav/<dialog>/<utt>.wav``. IEMOCAP has two speakers
per session; the speaker of a turn is the gender letter of the utterance id's last part
(``Ses01F_impro01_M003`` is session 1's male speaker), not the dialog's first letter.
"""
from __future__ import annotations

import re
from pathlib import Path

from serbench.corpora.common import Entry, build_manifest
from serbench.errors import SerbenchError
from serbench.manifest import Manifest, Skipped

NAME = "iemocap"
DEFAULT_LABEL_MAP = "iemocap-4class"
SESSIONS = [f"Session{n}" for n in range(1, 6)]
LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(?P<utt>\S+)\t(?P<label>\S+)\t\[")
UTT = re.compile(r"^Ses(?P<session>\d\d)[FM]_.+_(?P<gender>[FM])\d+$")


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


def parse_labels(root: Path) -> tuple[dict[str, str], list[Skipped]]:
    """utt_id -> raw label from every ``EmoEvaluation/*.txt`` of every session."""
    found: dict[str, str] = {}
    bad: list[Skipped] = []
    for session in SESSIONS:
        folder = root / session / "dialog" / "EmoEvaluation"
        if not folder.is_dir():
            raise SerbenchError(f"{folder}: missing (IEMOCAP label files live there)")
        for txt in sorted(folder.glob("*.txt")):
            if txt.name.startswith("._"):
                continue
            try:
                text = txt.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                bad.append(Skipped(str(txt), f"cannot read label file: {exc.strerror}"))
                continue
            for line in text.splitlines():
                m = LINE.match(line)
                if m:
                    found[m["utt"]] = m["label"]
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
        if not wav.is_file():
            skipped.append(Skipped(str(wav), "audio missing: labelled in EmoEvaluation but no wav"))
            continue
        entries.append(Entry(
            utt_id=utt, path=wav, speaker=f"Ses{m['session']}{m['gender']}", raw_label=raw,
            session=f"Ses{m['session']}", gender=m["gender"],
        ))
    return build_manifest(NAME, root, entries, skipped, label_map or DEFAULT_LABEL_MAP, progress)
