"""Write synthetic IEMOCAP-, CREMA-D-, RAVDESS- and EmoDB-like corpora in their real layouts.

The point is that the *real* recipes (``serbench.corpora``) read these trees: label files,
file names and folders are byte-for-byte in the distributed formats, only the audio is
synthetic (:mod:`serbench.synth.voice`). Every clip is seeded from (seed, corpus, clip index),
so a corpus is identical every time and does not depend on generation order.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from serbench import atomic
from serbench.errors import SerbenchError
from serbench.synth.voice import SR, Channel, random_speaker, utterance


@dataclass(frozen=True)
class Size:
    """How much of each corpus to write."""

    iemocap_per_speaker: dict       # raw IEMOCAP label -> utterances per speaker
    crema_actors: int
    crema_sentences: tuple          # the first must be "IEO" (the one with LO/MD/HI levels)
    ravdess_actors: int
    ravdess_repetitions: int
    emodb_texts: tuple


SIZES = {
    # for tests: seconds to write, a handful of clips per class
    "tiny": Size({"neu": 2, "hap": 1, "exc": 1, "ang": 2, "sad": 2, "fru": 1, "xxx": 1},
                 crema_actors=6, crema_sentences=("IEO", "DFA"), ravdess_actors=4,
                 ravdess_repetitions=1, emodb_texts=("a01", "a02")),
    # the demo: a full `serbench run` in a few minutes on 2 cores
    "small": Size({"neu": 8, "hap": 4, "exc": 4, "ang": 8, "sad": 8, "fru": 3, "xxx": 2, "sur": 1},
                  crema_actors=12, crema_sentences=("IEO", "DFA", "ITH"), ravdess_actors=8,
                  ravdess_repetitions=2, emodb_texts=("a01", "a02", "a04")),
    "medium": Size({"neu": 24, "hap": 12, "exc": 12, "ang": 24, "sad": 24, "fru": 8, "xxx": 6, "sur": 2},
                   crema_actors=24, crema_sentences=("IEO", "DFA", "ITH", "IWW", "TAI"),
                   ravdess_actors=24, ravdess_repetitions=2, emodb_texts=("a01", "a02", "a04", "a05", "a07")),
}
CORPORA = ("iemocap", "crema-d", "ravdess", "emodb")
IEMOCAP_EMOTION = {"neu": "neutral", "hap": "happy", "exc": "excited", "ang": "angry", "sad": "sad",
                   "fru": "frustrated", "sur": "surprised", "fea": "fearful", "dis": "disgust"}
CREMA_EMOTION = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy",
                 "NEU": "neutral", "SAD": "sad"}
CREMA_LEVEL = {"LO": 0.6, "MD": 1.0, "HI": 1.4, "XX": 1.0}
RAVDESS_EMOTION = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                   "06": "fearful", "07": "disgust", "08": "surprised"}
EMODB_EMOTION = {"W": "angry", "L": "bored", "E": "disgust", "A": "fearful", "F": "happy",
                 "T": "sad", "N": "neutral"}
EMODB_SPEAKERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M", "13": "F",
                  "14": "F", "15": "M", "16": "F"}
CORPUS_ID = {name: i for i, name in enumerate(CORPORA)}


def _rng(seed: int, corpus: str, *index: int) -> np.random.Generator:
    return np.random.default_rng([seed, CORPUS_ID[corpus], *index])


def _write(path: Path, y: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> None:
    """One clip, encoded in memory and written atomically (a full disk names the file, leaves no
    temporary, and the corpus's ``.complete`` stamp unwritten, so the next call redoes it)."""
    buf = io.BytesIO()
    sf.write(buf, y, sr, subtype=subtype, format="WAV")
    atomic.write_bytes(path, buf.getvalue(), what="synthetic clip")


def _xxx_emotion(rng: np.random.Generator) -> str:
    """IEMOCAP's 'xxx' (no annotator agreement): an ambiguous, randomly chosen rendering."""
    return ["neutral", "frustrated", "happy", "sad", "angry"][int(rng.integers(5))]


def write_iemocap(out: Path, size: Size, seed: int, progress: bool = True) -> Path:
    """``IEMOCAP_full_release/Session{1..5}/{dialog/EmoEvaluation, sentences/wav}``."""
    root = out / "IEMOCAP_full_release"
    plan = [raw for raw, k in size.iemocap_per_speaker.items() for _ in range(k)]
    bar = tqdm(total=5 * 2 * len(plan), desc="synth iemocap", unit="clip", disable=not progress, leave=False)
    for s in range(1, 6):
        ses = f"Ses{s:02d}"
        srng = _rng(seed, "iemocap", s)
        speakers = {g: random_speaker(f"{ses}{g}", g, srng) for g in "FM"}
        channel = Channel.random(srng, snr_db=(22, 32), room=0.15)
        dialogs = [f"{ses}F_impro01", f"{ses}M_impro02", f"{ses}F_script01_1"]
        turns = {d: [] for d in dialogs}   # dialog -> [(utt, raw, seconds)]
        counter: dict[tuple[str, str], int] = {}  # (dialog, gender) -> next turn number
        for gi, g in enumerate("FM"):
            for i, raw in enumerate(plan):
                rng = _rng(seed, "iemocap", s, gi, i)
                dialog = dialogs[i % len(dialogs)]
                number = counter.get((dialog, g), 0)
                counter[(dialog, g)] = number + 1
                utt = f"{dialog}_{g}{number:03d}"
                emotion = _xxx_emotion(rng) if raw == "xxx" else IEMOCAP_EMOTION[raw]
                y = utterance(speakers[g], emotion, float(rng.uniform(1.2, 3.5)), rng, channel)
                _write(root / f"Session{s}" / "sentences" / "wav" / dialog / f"{utt}.wav", y)
                turns[dialog].append((utt, raw, len(y) / SR))
                bar.update()
        evaluation = root / f"Session{s}" / "dialog" / "EmoEvaluation"
        for dialog, items in turns.items():
            _write_emo_evaluation(evaluation / f"{dialog}.txt", items, _rng(seed, "iemocap", s, 99))
        # a sub-folder that the recipe must ignore; one line even looks like a label line
        atomic.write_text(
            evaluation / "Categorical" / f"{dialogs[0]}_e1_cat.txt",
            f"{dialogs[0]}_F000 :Neutral state; ()\n[0.0000 - 1.0000]\t{ses}F_decoy_F999\tang\t[1.0, 1.0, 1.0]\n",
            what="synthetic label file")
    bar.close()
    return root


def _write_emo_evaluation(path: Path, items: list, rng: np.random.Generator) -> None:
    """One dialog's label file in IEMOCAP's format, annotator lines and all."""
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    t = float(rng.uniform(1, 5))
    for utt, raw, seconds in sorted(items):
        vad = ", ".join(f"{v:.4f}" for v in rng.uniform(1.5, 4.5, 3))
        lines.append(f"[{t:.4f} - {t + seconds:.4f}]\t{utt}\t{raw}\t[{vad}]")
        lines += ["C-E1:\tNeutral state;\t()", "C-E2:\tNeutral state; Frustration;\t()",
                  "A-E3:\tval 3; act 2; dom  2;\t()", ""]
        t += seconds + float(rng.uniform(0.2, 2.0))
    atomic.write_text(path, "\n".join(lines) + "\n", what="synthetic label file")


def write_crema_d(out: Path, size: Size, seed: int, progress: bool = True) -> Path:
    """``CREMA-D/AudioWAV/{actor}_{sentence}_{EMO}_{level}.wav`` + ``VideoDemographics.csv``."""
    root = out / "CREMA-D"
    crng = _rng(seed, "crema-d", 0)
    channel = Channel.random(crng, snr_db=(15, 25), room=0.05)   # one studio set-up, noisier
    actors = [str(1001 + i) for i in range(size.crema_actors)]
    clips = []
    for a in actors:
        for sentence in size.crema_sentences:
            for emo in CREMA_EMOTION:
                levels = ["XX"] if emo == "NEU" or sentence != "IEO" else ["LO", "MD", "HI"]
                clips += [(a, sentence, emo, lvl) for lvl in levels]
    speakers = {}
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
    for i, a in enumerate(actors):
        g = "MF"[i % 2]
        speakers[a] = random_speaker(a, g, _rng(seed, "crema-d", 1, i))
        w.writerow([a, 20 + i, "Male" if g == "M" else "Female", "Caucasian", "Not Hispanic"])
    atomic.write_text(root / "VideoDemographics.csv", fh.getvalue(), what="synthetic demographics file")
    for i, (a, sentence, emo, lvl) in enumerate(tqdm(clips, desc="synth crema-d", unit="clip",
                                                      disable=not progress, leave=False)):
        rng = _rng(seed, "crema-d", 2, i)
        y = utterance(speakers[a], CREMA_EMOTION[emo], float(rng.uniform(1.5, 2.8)), rng, channel,
                      intensity=CREMA_LEVEL[lvl], lead=(0.05, 0.3))
        _write(root / "AudioWAV" / f"{a}_{sentence}_{emo}_{lvl}.wav", y)
    return root


def write_ravdess(out: Path, size: Size, seed: int, sr: int = 48_000, progress: bool = True) -> Path:
    """``RAVDESS/Actor_XX/03-01-EE-II-SS-RR-AA.wav`` at 48 kHz, like the original release.

    Actors are theatrical: every emotion is exaggerated (``intensity`` 1.5, strong takes 2.0).
    """
    root = out / "RAVDESS"
    clips = []
    for actor in range(1, size.ravdess_actors + 1):
        for emo in RAVDESS_EMOTION:
            for intensity in (["01"] if emo == "01" else ["01", "02"]):
                for statement in ("01", "02"):
                    for rep in range(1, size.ravdess_repetitions + 1):
                        clips.append((actor, emo, intensity, statement, f"{rep:02d}"))
    speakers = {a: random_speaker(f"Actor_{a:02d}", "M" if a % 2 else "F", _rng(seed, "ravdess", 1, a))
                for a in range(1, size.ravdess_actors + 1)}
    channel = Channel(eq_db=0.0, lowpass_hz=7900.0, snr_db=45.0, room=0.02)  # clean studio
    for i, (actor, emo, inten, statement, rep) in enumerate(tqdm(
            clips, desc="synth ravdess", unit="clip", disable=not progress, leave=False)):
        rng = _rng(seed, "ravdess", 2, i)
        y = utterance(speakers[actor], RAVDESS_EMOTION[emo], float(rng.uniform(1.6, 2.2)), rng, channel,
                      intensity=1.5 if inten == "01" else 2.0, lead=(0.5, 1.0))
        name = f"03-01-{emo}-{inten}-{statement}-{rep}-{actor:02d}.wav"
        _write(root / f"Actor_{actor:02d}" / name, soxr.resample(y, SR, sr).astype(np.float32), sr)
    return root


def write_emodb(out: Path, size: Size, seed: int, progress: bool = True) -> Path:
    """``EmoDB/wav/03a01Fa.wav``: speaker, text, emotion letter, version."""
    root = out / "EmoDB"
    spk_ids = list(EMODB_SPEAKERS)[:4]
    clips = [(s, t, e) for s in spk_ids for t in size.emodb_texts for e in EMODB_EMOTION]
    speakers = {s: random_speaker(s, EMODB_SPEAKERS[s], _rng(seed, "emodb", 1, i)) for i, s in enumerate(spk_ids)}
    channel = Channel(eq_db=2.0, eq_hz=2500.0, lowpass_hz=7800.0, snr_db=40.0, room=0.05)
    for i, (s, text, e) in enumerate(tqdm(clips, desc="synth emodb", unit="clip",
                                          disable=not progress, leave=False)):
        rng = _rng(seed, "emodb", 2, i)
        y = utterance(speakers[s], EMODB_EMOTION[e], float(rng.uniform(1.5, 3.0)), rng, channel,
                      intensity=1.2, lead=(0.05, 0.2))
        _write(root / "wav" / f"{s}{text}{e}a.wav", y)
    return root


WRITERS = {"iemocap": write_iemocap, "crema-d": write_crema_d, "ravdess": write_ravdess,
           "emodb": write_emodb}


def write_all(out: str | Path, seed: int = 0, size: str = "small",
              corpora: tuple[str, ...] = CORPORA, progress: bool = True) -> dict[str, Path]:
    """Write each synthetic corpus under ``out``; returns corpus name -> its root folder.

    A folder already holding a complete corpus from the same (seed, size) is reused: the
    ``.complete`` stamp is written last, so an interrupted write is redone, never half-used.
    """
    if size not in SIZES:
        raise SerbenchError(f"unknown synthetic size {size!r}; choose from {', '.join(SIZES)}")
    unknown = set(corpora) - set(WRITERS)
    if unknown:
        raise SerbenchError(f"unknown synthetic corpus {sorted(unknown)}; choose from {', '.join(CORPORA)}")
    out = atomic.makedirs(Path(out), "the synthetic corpora folder")
    roots = {}
    for name in corpora:
        stamp = out / f".{name}.complete"
        want = f"seed={seed} size={size}\n"
        if stamp.is_file() and stamp.read_text() == want:
            roots[name] = out / _FOLDER[name]
            continue
        try:
            stamp.unlink(missing_ok=True)
        except OSError as exc:
            raise atomic.error(exc, stamp, "synthetic corpus stamp", "remove") from exc
        roots[name] = WRITERS[name](out, SIZES[size], seed, progress=progress)
        atomic.write_text(stamp, want, what="synthetic corpus stamp")
    return roots


_FOLDER = {"iemocap": "IEMOCAP_full_release", "crema-d": "CREMA-D", "ravdess": "RAVDESS", "emodb": "EmoDB"}
