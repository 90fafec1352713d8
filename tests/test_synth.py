"""The synthetic voice carries emotion in prosody, speaker idiosyncrasy, and is deterministic."""
from __future__ import annotations

import librosa
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from serbench.cli import main
from serbench.synth import corpora as synth
from serbench.synth import voice

EMOTIONS = ["angry", "happy", "neutral", "sad"]


def features(y, sr=voice.SR):
    """Plain prosodic/spectral statistics: what any SER front end would see."""
    rms = librosa.feature.rms(y=y)[0]
    voiced = rms > 0.2 * rms.max()
    f0 = librosa.yin(y, fmin=70, fmax=600, sr=sr)[: len(rms)]
    centroid = librosa.feature.spectral_centroid(y=y, sr=sr)[0]
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13)
    return np.r_[np.log(rms[voiced]).mean(), np.log(rms[voiced]).std(), np.log(f0[voiced]).mean(),
                 np.log(f0[voiced]).std(), centroid[voiced].mean(), voiced.mean(), mfcc.mean(1), mfcc.std(1)]


def test_emotion_is_learnable_on_unseen_speakers_and_leakage_shows():
    X, y, groups = [], [], []
    for s in range(8):
        spk = voice.random_speaker(f"s{s}", "MF"[s % 2], np.random.default_rng([s, 1]))
        for e, emo in enumerate(EMOTIONS):
            for k in range(6):
                clip = voice.utterance(spk, emo, 1.5, np.random.default_rng([s, e, k]))
                X.append(features(clip))
                y.append(emo)
                groups.append(s)
    X, y = np.array(X), np.array(y)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
    unseen = balanced_accuracy_score(y, cross_val_predict(clf, X, y, cv=GroupKFold(4), groups=groups))
    seen = balanced_accuracy_score(y, cross_val_predict(
        clf, X, y, cv=StratifiedKFold(4, shuffle=True, random_state=0)))
    assert unseen > 0.5                  # chance is 0.25
    assert seen > unseen + 0.03          # random splits share speakers, and it pays


def test_arousal_shows_in_f0_and_energy():
    spk = voice.random_speaker("s", "F", np.random.default_rng(0))
    def f0(emo):
        clip = voice.utterance(spk, emo, 2.0, np.random.default_rng(1), lead=(0, 0.01))
        return np.median(librosa.yin(clip, fmin=70, fmax=600, sr=voice.SR))
    assert f0("angry") > f0("neutral") > f0("sad")
    assert f0("happy") > f0("neutral")


def test_corpora_are_deterministic_by_seed(tmp_path):
    a = synth.write_all(tmp_path / "a", seed=3, size="tiny", corpora=("emodb",), progress=False)
    b = synth.write_all(tmp_path / "b", seed=3, size="tiny", corpora=("emodb",), progress=False)
    c = synth.write_all(tmp_path / "c", seed=4, size="tiny", corpora=("emodb",), progress=False)
    name = "03a01Wa.wav"
    assert (a["emodb"] / "wav" / name).read_bytes() == (b["emodb"] / "wav" / name).read_bytes()
    assert (a["emodb"] / "wav" / name).read_bytes() != (c["emodb"] / "wav" / name).read_bytes()


def test_existing_complete_corpus_is_reused_and_interrupted_one_redone(tmp_path):
    roots = synth.write_all(tmp_path, seed=0, size="tiny", corpora=("emodb",), progress=False)
    clip = roots["emodb"] / "wav" / "03a01Wa.wav"
    clip.write_bytes(b"marker")
    synth.write_all(tmp_path, seed=0, size="tiny", corpora=("emodb",), progress=False)
    assert clip.read_bytes() == b"marker"           # complete stamp: reused, not rewritten
    (tmp_path / ".emodb.complete").unlink()         # as if killed before finishing
    synth.write_all(tmp_path, seed=0, size="tiny", corpora=("emodb",), progress=False)
    assert clip.read_bytes() != b"marker"


def test_probe_clips_are_fixed():
    a, b = voice.probe_clips(2, seed=5, seconds=2.0), voice.probe_clips(2, seed=5, seconds=2.0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(x.dtype == np.float32 and 1.5 * voice.SR < len(x) <= 2 * voice.SR for x in a)


def test_cli_synth(tmp_path, capsys):
    assert main(["synth", str(tmp_path), "--size", "tiny", "--corpora", "emodb", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "emodb" in out and "32 utterances" in out
    assert main(["synth", str(tmp_path), "--corpora", "nope"]) == 2
