"""The audio ``serbench bench`` measures fidelity on, and calibrates static recipes with.

By default both are synthetic (:func:`synthetic`): the fixed probe set of
:func:`serbench.measure.clips` (seed :data:`~serbench.measure.PROBE_SEED`) and calibration clips
of another seed. Synthetic voices show whether a recipe changes what the encoder outputs. But
compression error depends on the input's level, spectrum and length, and those differ on the
speech a user will run. ``--probe-data NAME=PATH`` (:func:`from_corpus`) therefore measures on
real utterances of a corpus instead. The corpus is read exactly as ``serbench run`` reads it: its
corpus recipe via :mod:`serbench.sources`, so a bad file is skipped and counted. Each utterance is
fed as ``run`` feeds the encoder: :func:`serbench.embed.speech_segment` with the model entry's
``input`` preprocessing.

Calibration and probe speakers never overlap. Calibration fits activation ranges to its clips;
if the probe's speakers were among them, fidelity would be measured on voices the artefact was
tuned to. ``serbench run`` avoids the same test-set peeking by calibrating on training folds only.
The speakers are halved by scikit-learn's ``GroupShuffleSplit`` (seeded), and clips are then drawn
within each half. The split does not depend on ``--calibration`` or on whether a calibrated recipe
is asked for, so one seed gives one probe set whatever else changes. Clip ids are the
corpus-qualified utterance ids ``serbench run`` records (``ravdess/03-01-...``). They enter an
artefact's cache key (:func:`serbench.artefacts.cache.artefact_key`), so an artefact calibrated
on user data never shares a key with a synthetic-calibrated one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serbench import audio, corpora, embed, measure, sources, splits
from serbench.errors import SerbenchError


@dataclass(frozen=True)
class ProbeSet:
    """Probe clips and calibration clips (preprocessed waves) with their ids.

    ``source`` is plain data saying where they came from; its ``description`` is the line the
    output prints. ``notes`` are what the user must be told (skipped files).
    """

    probe: list[np.ndarray]
    probe_ids: list[str]
    calibration: list[np.ndarray]
    calibration_ids: list[str]
    source: dict
    notes: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        return self.source["description"]


def synthetic(probe: int, calibration: int) -> ProbeSet:
    """The fixed synthetic probe set and ``calibration`` synthetic calibration clips (0: none)."""
    waves, ids = measure.clips(probe, measure.PROBE_SEED)
    cal_waves, cal_ids = measure.clips(calibration, measure.CALIBRATION_SEED) if calibration else ([], [])
    text = f"probe: synthetic, {len(ids)} clips (seed {measure.PROBE_SEED})"
    if cal_ids:
        text += f"; calibration: {len(cal_ids)} synthetic clips (seed {measure.CALIBRATION_SEED})"
    return ProbeSet(waves, ids, cal_waves, cal_ids,
                    {"kind": "synthetic", "probe_clips": len(ids), "probe_seed": measure.PROBE_SEED,
                     "calibration_clips": len(cal_ids), "calibration_seed": measure.CALIBRATION_SEED,
                     "description": text})


def choose(probe_data: str | None, entry, probe: int, calibration: int, seed: int = 0) -> ProbeSet:
    """What ``bench`` and ``tune`` probe and calibrate on: ``--probe-data NAME=PATH``'s corpus
    (:func:`from_corpus`) when given, else the synthetic sets (:func:`synthetic`)."""
    return (from_corpus(probe_data, entry, probe, calibration, seed) if probe_data
            else synthetic(probe, calibration))


def parse(spec: str) -> tuple[str, Path]:
    """``"ravdess=/data/RAVDESS"`` -> ``("ravdess", Path(...))``; the corpus name must be a recipe's."""
    name, sep, path = str(spec).partition("=")
    name, path = name.strip(), path.strip()
    if not sep or not name or not path:
        raise SerbenchError(f"--probe-data wants NAME=PATH (NAME one of {', '.join(corpora.RECIPES)}), got {spec!r}")
    if name not in corpora.RECIPES:
        raise SerbenchError(f"--probe-data {spec}: unknown corpus {name!r}; known: {', '.join(corpora.RECIPES)}")
    return name, Path(path).expanduser()


def from_corpus(spec: str, entry, probe: int, calibration: int, seed: int = 0,
                progress: bool = False) -> ProbeSet:
    """Up to ``probe`` utterances of half the corpus's speakers and up to ``calibration`` (0: none)
    of the other half, drawn with ``seed``; the clips are what ``serbench run`` feeds ``entry``."""
    from sklearn.model_selection import GroupShuffleSplit

    name, path = parse(spec)
    source = sources.resolve((name,), {name: path})[name]
    manifest = sources.manifests({name: source}, progress=progress)[name]
    frame = manifest.frame
    speakers = sorted(frame["speaker"].unique())
    if len(speakers) < 2:
        raise SerbenchError(f"--probe-data {spec}: {len(frame)} usable utterance(s) of {len(speakers)} speaker(s); "
                            "probe and calibration speakers must differ, so at least 2 speakers are needed")
    cal_rows, probe_rows = next(GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=seed)
                                .split(frame, groups=frame["speaker"]))
    rng = np.random.default_rng([seed, 31])
    probe_pick = frame.iloc[sorted(rng.choice(probe_rows, size=min(probe, len(probe_rows)), replace=False))]
    # calibration keeps its random order: a recipe's max_calibration_clips takes the first ones
    cal_pick = frame.iloc[rng.permutation(cal_rows)[:calibration]] if calibration else frame.iloc[[]]
    if len(probe_pick) < 2:
        raise SerbenchError(f"--probe-data {spec}: the probe speakers have {len(probe_pick)} usable utterance(s); "
                            "centred cosine needs at least 2")
    prep = audio.Preprocess(sample_rate=entry.sample_rate, **entry.input)

    def load(pick) -> tuple[list[np.ndarray], list[str]]:
        return ([embed.speech_segment(p, prep) for p in pick["path"]],
                [splits.qualify(name, u) for u in pick["utt_id"]])

    probe_waves, probe_ids = load(probe_pick)
    cal_waves, cal_ids = load(cal_pick)
    probe_spk, cal_spk = sorted(set(probe_pick["speaker"])), sorted(set(cal_pick["speaker"]))
    held = sorted(set(frame.iloc[cal_rows]["speaker"]))
    if set(probe_spk) & set(held):   # cannot happen with a group split; checked because it must not
        raise SerbenchError(f"internal error: probe and calibration speakers overlap: {set(probe_spk) & set(held)}")
    text = f"probe: {name} at {path}, {len(probe_ids)} clips of {len(probe_spk)} speakers; calibration: "
    text += (f"{len(cal_ids)} clips of {len(cal_spk)} other speakers" if cal_ids
             else f"none asked ({len(held)} other speakers held out for it)")
    notes = []
    if manifest.skipped:
        notes.append(f"{name}: {len(manifest.skipped)} file(s) skipped, not probed (see `serbench corpus {name} "
                     f"{path}` for each file and reason)")
        text += f"; {len(manifest.skipped)} file(s) skipped"
    info = {"kind": "corpus", "corpus": name, "path": str(path), "origin": source.origin,
            "label_map": manifest.label_map, "utterances": len(frame), "speakers": len(speakers),
            "skipped": len(manifest.skipped),
            "skipped_files": [{"path": s.path, "reason": s.reason} for s in manifest.skipped],
            "seed": seed, "split": "sklearn GroupShuffleSplit by speaker, test_size=0.5",
            "preprocess": prep.config(), "probe_clips": len(probe_ids), "probe_speakers": probe_spk,
            "calibration_clips": len(cal_ids), "calibration_speakers": cal_spk,
            "calibration_held_out_speakers": held, "description": text}
    return ProbeSet(probe_waves, probe_ids, cal_waves, cal_ids, info, tuple(notes))
