"""Audio that must not be scored (silence, DC, impossible headers) and damaged store/cache entries:
each is skipped with its reason, rebuilt with a note, or a named error; never a traceback or a
silent result (issue 23)."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serbench import audio, corpora, embed, runtime
from serbench.cli import main
from serbench.errors import SerbenchError
from serbench.store import Store

SR = 16_000


def tone(seconds: float = 1.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def ravdess(tmp_path: Path, clips: dict[str, tuple[np.ndarray, int]]) -> Path:
    """A one-actor RAVDESS tree holding ``{name: (samples, rate)}``."""
    actor = tmp_path / "ravdess" / "Actor_01"
    actor.mkdir(parents=True)
    for name, (y, sr) in clips.items():
        sf.write(actor / name, y, sr)
    return actor.parent


def reasons(manifest) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in manifest.skipped}


class StubModel:
    """What runtime.analyse needs of a model: labels, clip length, probabilities (counted)."""

    labels = ["angry", "sad"]
    clip_seconds = 8.0

    def __init__(self):
        self.calls = 0

    def probabilities(self, wave):
        self.calls += 1
        return np.array([0.7, 0.3])


# ---- case 1: silence and constant DC ------------------------------------------------------------


def test_silence_and_dc_are_skipped_with_the_reason_and_counted(tmp_path):
    rng = np.random.default_rng(0)
    root = ravdess(tmp_path, {
        "03-01-01-01-01-01-01.wav": (np.zeros(3 * SR, np.float32), SR),                    # digital silence
        "03-01-02-01-01-01-01.wav": (np.full(3 * SR, 0.5, np.float32), SR),                # constant DC
        "03-01-03-01-01-01-01.wav": (0.5 + rng.normal(0, 3e-5, 3 * SR).astype(np.float32), SR),  # DC + dither
        "03-01-04-01-01-01-01.wav": (tone(1.0, amp=0.001), SR),                             # quiet, but sound
        "03-01-05-01-01-01-01.wav": (tone(1.0), SR),
    })
    m = corpora.prepare("ravdess", root, label_map="ravdess-8class", progress=False)
    why = reasons(m)
    assert why["03-01-01-01-01-01-01.wav"].startswith("silent (no variation): every sample is the same "
                                                      "(digital silence)")
    assert "constant DC offset of +0.5" in why["03-01-02-01-01-01-01.wav"]
    assert "dBFS after removing its mean" in why["03-01-03-01-01-01-01.wav"]
    assert set(m.frame["utt_id"]) == {"03-01-04-01-01-01-01", "03-01-05-01-01-01-01"}
    assert m.summary()["skipped"] == 3 and m.summary()["files"] == 5


def test_the_rule_is_one_function_for_corpus_and_infer(tmp_path):
    """The same signals are silent in a corpus scan and to infer; the boundary is -80 dBFS of
    variation around the mean, whatever the offset."""
    rng = np.random.default_rng(1)
    noise = rng.choice([-1.0, 1.0], 3 * SR)          # RMS exactly 1 after the mean
    below, above = 0.5 + 0.9e-4 * noise, 0.5 + 1.1e-4 * noise
    assert runtime.is_silent(below) and not runtime.is_silent(above)
    assert runtime.is_silent(np.zeros(100)) and runtime.is_silent(np.full(100, -0.25))
    assert not runtime.is_silent(np.zeros(0))       # no samples is "no audio", a different reason
    for name, y, silent in (("below.wav", below, True), ("above.wav", above, False)):
        sf.write(tmp_path / name, y.astype(np.float32), SR, subtype="FLOAT")
        assert (audio.sample_problem(tmp_path / name) is not None) == silent
        r = runtime.analyse(tmp_path / name, StubModel(), runtime.Options(vad=False, min_speech=1.0))
        assert (r["status"] == "silent") == silent, r


def test_infer_calls_dc_silent_and_does_not_classify_it(tmp_path):
    sf.write(tmp_path / "dc.wav", np.full(3 * SR, 0.5, np.float32), SR)
    model = StubModel()
    r = runtime.analyse(tmp_path / "dc.wav", model, runtime.Options(vad=False))
    assert r["status"] == "silent" and r["emotion"] is None and model.calls == 0
    assert r["message"] == "no variation in any window: every sample is the same (a constant DC offset of +0.5)"
    assert r["timeline"][0]["skipped"] == "silent"


def test_an_antiphase_stereo_clip_is_silence_in_mono(tmp_path):
    y = tone(1.0)
    root = ravdess(tmp_path, {"03-01-01-01-01-01-01.wav": (np.stack([y, -y], 1), SR),
                              "03-01-02-01-01-01-01.wav": (tone(1.0), SR)})
    m = corpora.prepare("ravdess", root, label_map="ravdess-8class", progress=False)
    assert reasons(m)["03-01-01-01-01-01-01.wav"].startswith("silent (no variation)")


# ---- case 2: impossible headers, refused before decoding ---------------------------------------


def test_a_1hz_header_is_refused_before_decoding(tmp_path, monkeypatch):
    root = ravdess(tmp_path, {"03-01-01-01-01-01-01.wav": (tone(3.8), 1),     # 61,200 frames "at 1 Hz": 17 h
                              "03-01-02-01-01-01-01.wav": (tone(0.01, sr=1_000_000), 1_000_000),
                              "03-01-03-01-01-01-01.wav": (tone(1.0), SR)})
    bad = root / "Actor_01" / "03-01-01-01-01-01-01.wav"
    assert sf.info(str(bad)).duration > 16 * 3600
    decoded = []
    real_read = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, *a, **k: decoded.append(self.name) or real_read(self, *a, **k))
    monkeypatch.setattr(sf, "read", lambda *a, **k: pytest.fail("decoded"))
    m = corpora.prepare("ravdess", root, label_map="ravdess-8class", progress=False)
    why = reasons(m)
    assert why["03-01-01-01-01-01-01.wav"].startswith("implausible sample rate: the header says 1 Hz")
    assert "the header says 1000000 Hz" in why["03-01-02-01-01-01-01.wav"]
    assert list(m.frame["utt_id"]) == ["03-01-03-01-01-01-01"] and m.summary()["skipped"] == 2
    assert str(bad) not in decoded
    with pytest.raises(audio.AudioError, match=f"{bad}: implausible sample rate"):
        audio.load(bad)                               # sf.read would fail the test: never reached


def test_infer_refuses_an_impossible_rate_naming_the_file(tmp_path):
    sf.write(tmp_path / "1hz.wav", tone(30.0, sr=1), 1)
    with pytest.raises(runtime.InferError, match="1hz.wav: implausible sample rate: the header says 1 Hz"):
        runtime.analyse(tmp_path / "1hz.wav", StubModel(), runtime.Options(vad=False))


def test_a_header_claiming_two_hours_is_refused_for_a_corpus_clip(tmp_path):
    """A FLAC whose STREAMINFO claims 2 h for 1 s of audio; over the 1 h a clip may be."""
    root = ravdess(tmp_path, {"03-01-01-01-01-01-01.flac": (tone(1.0), SR),
                              "03-01-02-01-01-01-01.wav": (tone(1.0), SR)})
    path = root / "Actor_01" / "03-01-01-01-01-01-01.flac"
    b = bytearray(path.read_bytes())
    field = int.from_bytes(b[18:26], "big")                        # rate, channels, bits, total samples
    b[18:26] = ((field & ~((1 << 36) - 1)) | (SR * 7200)).to_bytes(8, "big")
    path.write_bytes(bytes(b))
    assert sf.info(str(path)).duration == 7200
    m = corpora.prepare("ravdess", root, label_map="ravdess-8class", progress=False)
    assert reasons(m)["03-01-01-01-01-01-01.flac"].startswith("implausibly long: the header says 2.0 h")
    with pytest.raises(audio.AudioError, match="implausibly long"):
        audio.load(path)
    assert runtime.header_problem(SR, SR * 3600) is None             # infer streams: no length limit
    assert runtime.header_problem(4_000, 1) is None and runtime.header_problem(384_000, 1) is None
    assert runtime.header_problem(3_999, 1) and runtime.header_problem(384_001, 1)


# ---- case 3: damaged store rows, cache entries and model cards ---------------------------------


def test_a_cut_short_run_row_is_named_and_the_rest_of_the_store_is_usable(hand, tmp_path, capsys):
    path, bad = hand.path, hand.ids["D"]
    with sqlite3.connect(path) as con:
        con.execute("UPDATE runs SET config = substr(config, 1, 20) WHERE id = ?", (bad,))
        con.execute("UPDATE runs SET provenance = '[1]' WHERE id = ?", (hand.ids["E"],))   # JSON, wrong kind
    with Store(path) as db:
        with pytest.raises(SerbenchError, match=rf"{path}: run {bad} is damaged: its config is not valid JSON"):
            db.run(bad)
        with pytest.raises(SerbenchError, match=r"is damaged: its provenance is list JSON, not an object"):
            db.run(hand.ids["E"])
        runs = db.runs()
        assert len(runs) == len(hand.ids) - 2 and set(runs.attrs["damaged"]) == {bad, hand.ids["E"]}
        assert f"run {bad} is damaged" in capsys.readouterr().err
        db.create_run(model="m", recipe="r", protocol="p", mode="probe",   # still writable
                      config={"synthetic": True, "weights_source": {}}, provenance={})
    assert main(["compare", "--store", str(path), "--out", str(tmp_path / "a"), "--runs", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"run {bad} is damaged: its config" in err and "Traceback" not in err
    assert main(["compare", "--store", str(path), "--out", str(tmp_path / "b")]) == 0
    assert f"run {bad} is damaged" in capsys.readouterr().err


def test_a_cut_short_fold_row_is_named(hand, tmp_path, capsys):
    path, bad = hand.path, hand.ids["D"]
    with sqlite3.connect(path) as con:
        con.execute("UPDATE folds SET metrics = '{\"ua\": 0.' WHERE run_id = ? AND fold = 1", (bad,))
    with Store(path) as db:
        with pytest.raises(SerbenchError, match=f"run {bad} fold 1 is damaged: its metrics"):
            db.fold_results(bad)
    assert main(["compare", "--store", str(path), "--out", str(tmp_path / "rep")]) == 0
    assert f"run {bad} fold 1 is damaged" in capsys.readouterr().err


class Mean:
    """A one-thread stand-in encoder: (2 layers, 2) of the clip's mean and std."""

    def embed(self, wave):
        return np.array([[wave.mean(), wave.std()], [wave.min(), wave.max()]], np.float32)


def test_a_truncated_cached_embedding_is_rebuilt_with_a_note(tmp_path, capsys):
    files = []
    for i in range(2):
        sf.write(tmp_path / f"{i}.wav", tone(1.0, amp=0.1 * (i + 1)), SR)
        files.append(str(tmp_path / f"{i}.wav"))
    first, stats = embed.embed_files(files, Mean(), "mean", progress=False, prefetch=0)
    entry = next(Path(stats["cache"]).rglob(f"{embed.file_hashes(files[:1])[0]}.npy"))
    entry.write_bytes(entry.read_bytes()[:-5])                      # cut short
    again, stats = embed.embed_files(files, Mean(), "mean", progress=False, prefetch=0)
    assert np.array_equal(first, again) and stats["computed"] == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rebuilt: 1 damaged cached embedding(s)") and files[0] in err and len(err.splitlines()) == 1
    assert embed.embed_files(files, Mean(), "mean", progress=False)[1]["cache_hits"] == 2   # whole again


def test_a_damaged_cached_artefact_is_rebuilt_with_a_note(capsys):
    from serbench import registry
    from serbench.artefacts import cache

    entry, recipe = registry.load_model("tiny"), registry.load_recipe("fp32")
    art = cache.build(entry, recipe, "random:0")
    model = art.path / art.file
    whole = model.read_bytes()
    model.write_bytes(whole[: len(whole) // 2])                     # a cut model.onnx
    with pytest.raises(SerbenchError, match=rf"{art.file} holds \d+ bytes where artefact.json recorded"):
        cache.load(art.path)
    again = cache.build(entry, recipe, "random:0")
    assert capsys.readouterr().err.startswith(f"rebuilt: {art.path}: damaged artefact: {art.file} holds")
    assert (again.path / again.file).read_bytes() == whole
    meta = again.path / cache.META
    meta.write_text(meta.read_text()[:40])                            # a cut artefact.json
    cache.build(entry, recipe, "random:0")
    assert "its artefact.json is not valid JSON" in capsys.readouterr().err
    assert cache.load(again.path).file == art.file


def test_a_cut_short_model_card_is_named(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / runtime.LABELS_FILE).write_text(json.dumps({"classes": ["a", "b"]}))
    (folder / runtime.PREPROCESS_FILE).write_text(json.dumps({"sample_rate": SR}))
    (folder / runtime.MODEL_FILE).write_bytes(b"\x08\x07cut")
    (folder / "model_card.json").write_text('{"format": "serbench-export/1", "mod')
    with pytest.raises(runtime.InferError, match=r"model_card.json: damaged model card, not valid JSON"):
        runtime.EmotionModel(folder)
    (folder / "model_card.json").write_text("{}")
    with pytest.raises(runtime.InferError, match=r"model.onnx: onnxruntime cannot load it .* damaged or cut short"):
        runtime.EmotionModel(folder)


# ---- case 4: the embedding cache keys on the audio's bytes -------------------------------------


def test_a_clip_rewritten_with_the_same_size_and_mtime_is_embedded_again(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, tone(1.0, amp=0.1), SR)
    first = embed.embed_files([str(path)], Mean(), "mean", progress=False, prefetch=0)[0]
    st = path.stat()
    sf.write(path, tone(1.0, amp=0.2), SR)                            # same format: same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    second, stats = embed.embed_files([str(path)], Mean(), "mean", progress=False, prefetch=0)
    assert stats["computed"] == 1 and not np.allclose(first, second)


# ---- case 5: Ctrl-C -------------------------------------------------------------------------------


RUN = ["run", "--model", "tiny", "--protocol", "production", "--weights", "random:0", "--synthetic",
       "--synthetic-size", "tiny", "--no-measure", "--quiet"]


def test_ctrl_c_during_a_run_is_one_line_exit_130_and_the_run_resumable(monkeypatch, capsys):
    real = embed.embed_files

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(embed, "embed_files", interrupted)
    try:
        rc = main(RUN)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped serbench's main() (a traceback, exit -2)")
    assert rc == 130
    err = capsys.readouterr().err.strip()
    assert err == ("serbench run: interrupted (Ctrl-C); its unfinished runs stay in the store, not failed: "
                   "resume with the same command and --resume")
    with Store() as db:
        runs = db.runs()
    assert runs["status"].tolist() == ["running"] and runs.loc[0, "error"].startswith("interrupted (Ctrl-C)")
    monkeypatch.setattr(embed, "embed_files", real)
    assert main(RUN + ["--resume"]) == 0
    with Store() as db:
        assert db.runs()["status"].tolist() == ["finished"] and len(db.runs()) == 1


def test_a_real_sigint_exits_130_without_a_traceback(tmp_path):
    """The process as a shell sees it: SIGINT half-way through `serbench synth`."""
    code = ("import os, signal, sys\n"
            "from serbench.synth import corpora\n"
            # raise_signal: SIGINT to this very thread, handled before it returns (os.kill to the
            # process could land on a worker thread and be noticed only after write_all returned)
            "corpora.write_all = lambda *a, **k: signal.raise_signal(signal.SIGINT)\n"
            "from serbench.cli import main\n"
            f"sys.argv = ['serbench', 'synth', {str(tmp_path / 'out')!r}, '--size', 'tiny', '--quiet']\n"
            "raise SystemExit(main())\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "serbench synth: interrupted (Ctrl-C)"
    assert signal.SIGINT == 2
