"""The voice-note runtime (serbench.runtime): windows, preprocessing, resampling, VAD, whole files.

The model folder here is built directly (tiny random backbone + an untrained head, merged as
`serbench export` merges them), so these tests need no training run; test_export.py covers the
export of a real run.
"""
from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import soxr

from serbench import audio, deploy, embed, runtime, registry
from serbench.artefacts import cache
from serbench.cli import main
from serbench.runtime import note as note_module
from serbench.synth import voice

SR = runtime.SAMPLE_RATE


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import torch

    from serbench.train import LayerWeightedProbe

    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("SERBENCH_HOME", str(home))
    try:
        entry = registry.load_model("tiny")
        art = cache.build(entry, registry.load_recipe("fp32"), "random:0")
        torch.manual_seed(0)
        head = LayerWeightedProbe(3, 32, 4).eval()
        out = tmp_path_factory.mktemp("model")
        import onnx

        onnx.save(deploy.graph.merged_graph(art.path / art.file, head, 3, 32), str(out / runtime.MODEL_FILE))
        pre = {**audio.Preprocess().config(), "min_samples": embed.MIN_SAMPLES}
        deploy.write_runtime_files(out, ["angry", "happy", "neutral", "sad"], pre, log=lambda *a: None)
    finally:
        mp.undo()
    return out


@pytest.fixture(scope="module")
def model(model_dir):
    return runtime.EmotionModel(model_dir, threads=1)


@pytest.fixture(scope="module")
def vad(model_dir):
    return runtime.SileroVad(runtime.find_vad_model(model_dir))


def note(seconds_of_speech: float = 20.0, seed: int = 0, emotion: str = "angry", gap=(0.6, 2.5),
         noise: float = 0.002) -> np.ndarray:
    """Utterances of one speaker with noisy gaps between them, 16 kHz float32."""
    rng = np.random.default_rng(seed)
    spk = voice.random_speaker("n", "F", rng)
    parts, total = [], 0.0
    while total < seconds_of_speech:
        d = float(rng.uniform(2.0, 4.0))
        parts.append(voice.utterance(spk, emotion, d, rng, lead=(0.05, 0.1)))
        parts.append(rng.normal(0, noise, int(SR * rng.uniform(*gap))).astype(np.float32))
        total += d
    return np.concatenate(parts).astype(np.float32)


# ---- window / hop arithmetic --------------------------------------------------------------------


@pytest.mark.parametrize("total, window, hop, min_len, expected", [
    (20, 8, 8, 1, [(0, 8), (8, 16), (16, 20)]),          # last partial window kept (4 >= 1)
    (16.5, 8, 8, 1, [(0, 8), (8, 16)]),                  # 0.5 s tail < 1 s: dropped
    (16, 8, 8, 1, [(0, 8), (8, 16)]),                    # exact fit: no empty tail window
    (5, 8, 8, 1, [(0, 5)]),                              # shorter than a window: one partial window
    (0.5, 8, 8, 1, []),                                  # shorter than the minimum: nothing
    (0, 8, 8, 1, []),
    (20, 8, 4, 1, [(0, 8), (4, 12), (8, 16), (12, 20)]),  # overlapping, ends exactly: no tail
    (21, 8, 4, 1, [(0, 8), (4, 12), (8, 16), (12, 20), (16, 21)]),
    (25, 8, 10, 1, [(0, 8), (10, 18), (20, 25)]),        # hop > window skips audio between windows
    (19, 8, 10, 1, [(0, 8), (10, 18)]),                  # ... including a tail before the next start
    (8.9, 8, 8, 1, [(0, 8)]),
    (9.0, 8, 8, 1, [(0, 8), (8, 9)]),                    # exactly the minimum is enough
])
def test_window_hop_arithmetic(total, window, hop, min_len, expected):
    s = lambda x: int(round(x * SR))  # noqa: E731
    got = runtime.plan_windows(s(total), s(window), s(hop), s(min_len))
    assert got == [(s(a), s(b)) for a, b in expected]


def test_plan_windows_rejects_nonsense():
    with pytest.raises(runtime.InferError):
        runtime.plan_windows(100, 0, 10, 1)
    with pytest.raises(runtime.InferError):
        runtime.plan_windows(100, 10, -1, 1)


@pytest.mark.parametrize("window, hop, min_len", [(800, 800, 100), (800, 300, 100), (800, 1100, 100), (50, 50, 50)])
def test_streaming_windower_equals_the_plan_on_the_file_timeline(window, hop, min_len):
    """Windows are the plan over the *file*; each holds exactly the speech whose positions fall
    inside it (nothing from outside), whatever the pieces it arrived in."""
    rng = np.random.default_rng(window + hop)
    for n in (0, 40, 799, 800, 2000, 5431):
        length = 3 * n + 1                       # the file; a third of it is speech
        speech = rng.normal(size=n).astype(np.float32)
        positions = np.sort(rng.choice(length, size=n, replace=False)).astype(np.int64)
        w = runtime.Windower(window, hop, min_len)
        got, i = [], 0
        while i < n:
            k = int(rng.integers(1, 700))
            w.push(speech[i:i + k], positions[i:i + k])
            i += k
            decided = positions[i] if i < n else length   # no speech before the next piece is missing
            got += list(w.ready(int(decided)))
        got += list(w.flush(length))
        plan = runtime.plan_windows(length, window, hop, min_len)
        assert [(a, b) for a, b, _, _ in got] == plan
        for a, b, wave, pos in got:
            inside = (positions >= a) & (positions < b)
            assert np.array_equal(wave, speech[inside]) and np.array_equal(pos, positions[inside])
        assert w.max_buffered <= window + hop + 700


# ---- preprocessing and resampling ---------------------------------------------------------------


def _reference_preprocess(y: np.ndarray, pre) -> tuple[np.ndarray, int]:
    """The paper's steps written with librosa and scipy (what serbench.audio used before it ran the
    runtime's numpy code): trim -> cut -> pre-emphasis -> peak -> pad."""
    import librosa
    import scipy.signal

    if y.size:
        y, _ = librosa.effects.trim(y, top_db=pre.trim_db)
    y = y[: pre.length]
    if y.size:
        y = scipy.signal.lfilter([1.0, -pre.preemphasis], [1.0], y).astype(np.float32)
        top = float(np.max(np.abs(y)))
        if top > 0:
            y = (y * (pre.peak / top)).astype(np.float32)
    n = y.size
    return np.pad(y, (0, pre.length - n)).astype(np.float32), n


def test_numpy_preprocessing_matches_librosa_and_scipy():
    pre = audio.Preprocess()
    cfg = {**pre.config(), "min_samples": embed.MIN_SAMPLES}
    rng = np.random.default_rng(0)
    clips = voice.probe_clips(3, seed=5) + [
        note(9.0, seed=1),                                  # longer than 8 s: cut
        np.concatenate([np.zeros(9000), voice.probe_clips(1, seed=6)[0][:20000], np.zeros(30000)]),
        rng.normal(0, 0.01, 3000), np.zeros(16000), np.zeros(0), np.ones(10),
    ]
    for clip in clips:
        clip = np.asarray(clip, np.float32)
        ref, n_ref = _reference_preprocess(clip, pre)
        got, n_got = runtime.preprocess(clip, cfg)
        assert n_got == n_ref and got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)      # bit for bit: cached embeddings and results stay valid
        served, n_served = pre(clip)        # serbench.audio serves the same numpy code
        assert n_served == n_got and np.array_equal(served, got)
        if clip.size:
            import librosa

            _, idx = librosa.effects.trim(clip, top_db=20)
            assert runtime.trim_interval(clip, 20) == tuple(int(i) for i in idx)


@pytest.mark.parametrize("sr", [44100, 48000, 22050, 8000])
def test_numpy_resampler_is_close_to_soxr(sr):
    y = voice.probe_clips(1, seed=2)[0]
    x = soxr.resample(y, SR, sr).astype(np.float32)
    ref = soxr.resample(x, sr, SR, quality="HQ")
    r = runtime.PolyphaseResampler(sr, SR)
    rng = np.random.default_rng(sr)
    out, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 30000))
        out.append(r.process(x[i:i + n]))
        i += n
    out = np.concatenate(out + [r.flush()])
    assert out.size == ref.size
    err = np.fft.rfft(out - ref)
    spec = np.fft.rfft(ref)
    band = np.fft.rfftfreq(ref.size, 1 / SR) < 7000
    snr = 10 * np.log10(np.sum(np.abs(spec[band]) ** 2) / np.sum(np.abs(err[band]) ** 2))
    assert snr > 45, snr
    # and with soxr installed, the streaming path gives exactly what training's soxr.resample gives
    s = runtime.Resampler(sr)
    assert s.kind.startswith("soxr")
    streamed = np.concatenate([s.process(x[j:j + 7777]) for j in range(0, x.size, 7777)] + [s.flush()])
    np.testing.assert_array_equal(streamed, ref)


# ---- VAD ----------------------------------------------------------------------------------------


def test_streaming_vad_equals_silero_get_speech_timestamps(vad):
    import silero_vad
    import torch

    y = note(25.0, seed=3)
    ref = silero_vad.get_speech_timestamps(torch.from_numpy(y), silero_vad.load_silero_vad(onnx=True))
    assert len(ref) >= 4
    assert runtime.speech_timestamps(y, vad) == ref
    # streamed in odd block sizes, the speech handed on is exactly the audio of those segments
    stream = runtime.VadStream(vad)
    rng = np.random.default_rng(0)
    pieces, i = [], 0
    while i < y.size:
        n = int(rng.integers(100, 40000))
        pieces += list(stream.push(y[i:i + n]))
        i += n
    pieces += list(stream.finish())
    positions = np.concatenate([p for p, _ in pieces])
    samples = np.concatenate([s for _, s in pieces])
    expected = np.concatenate([np.arange(s["start"], s["end"]) for s in ref])
    assert np.array_equal(positions, expected)
    assert np.array_equal(samples, y[expected])
    assert stream.max_buffered < 3 * SR  # never more than a few seconds held


# ---- whole files --------------------------------------------------------------------------------


def _opts(**kw):
    return runtime.Options(**kw)


def test_no_speech_file_says_so(tmp_path, model, vad):
    rng = np.random.default_rng(0)
    path = tmp_path / "room.wav"
    sf.write(path, np.concatenate([np.zeros(SR * 3), rng.normal(0, 0.003, SR * 20)]).astype(np.float32), SR)
    r = runtime.analyse(path, model, _opts(), vad)
    assert r["status"] == "no_speech" and r["emotion"] is None and r["distribution"] is None
    assert r["windows"] == 0 and r["speech_s"] == 0
    # without VAD, digital silence is not classified either
    sf.write(tmp_path / "zeros.wav", np.zeros(SR * 12, np.float32), SR)
    r = runtime.analyse(tmp_path / "zeros.wav", model, _opts(vad=False))
    assert r["status"] == "silent" and r["emotion"] is None


def test_very_short_files(tmp_path, model, vad):
    y = voice.probe_clips(1, seed=9)[0]
    sf.write(tmp_path / "short.wav", y[8000:8000 + int(0.6 * SR)], SR)   # 0.6 s of speech
    r = runtime.analyse(tmp_path / "short.wav", model, _opts(vad=False), None)
    assert r["status"] == "too_short" and r["emotion"] is None and "1.0 s" in r["message"]
    r = runtime.analyse(tmp_path / "short.wav", model, _opts(), vad)
    assert r["status"] in ("too_short", "no_speech") and r["emotion"] is None
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    assert runtime.analyse(tmp_path / "empty.wav", model, _opts(), vad)["status"] == "too_short"
    sf.write(tmp_path / "tiny.wav", y[8000:8050], SR)                    # 50 samples
    assert runtime.analyse(tmp_path / "tiny.wav", model, _opts(vad=False))["status"] == "too_short"
    # a lower minimum lets a short clip through
    r = runtime.analyse(tmp_path / "short.wav", model, _opts(vad=False, min_speech=0.5))
    assert r["status"] == "ok" and r["windows"] == 1


def test_stereo_44k_file(tmp_path, model, vad):
    y = note(18.0, seed=4)
    x = soxr.resample(y, SR, 44100)
    sf.write(tmp_path / "stereo.wav", np.stack([x, 0.3 * x], axis=1), 44100, subtype="PCM_24")
    r = runtime.analyse(tmp_path / "stereo.wav", model, _opts(), vad)
    assert r["status"] == "ok" and r["channels"] == 2 and r["sample_rate"] == 44100
    assert abs(r["duration_s"] - y.size / SR) < 0.01
    assert r["resampler"].startswith("soxr")
    assert 10 < r["speech_s"] < r["duration_s"]
    spans = runtime.plan_windows(int(round(r["duration_s"] * SR)), 8 * SR, 8 * SR, SR)   # the file's timeline
    assert r["windows"] == sum(w.get("emotion") is not None for w in r["timeline"]) <= len(spans)
    assert all((round(w["start_s"] * SR), round(w["end_s"] * SR)) in spans for w in r["timeline"])
    assert all(w["speech_s"] <= w["end_s"] - w["start_s"] + 1e-3 for w in r["timeline"])
    assert abs(sum(r["distribution"].values()) - 1) < 1e-3
    starts = [w["start_s"] for w in r["timeline"]]
    assert starts == sorted(starts) and all(0 <= w["start_s"] < w["end_s"] <= r["duration_s"] for w in r["timeline"])
    # the same audio as a mono 16 kHz file gives (nearly) the same answer: channels averaged, resampled
    sf.write(tmp_path / "mono.wav", (0.65 * y).astype(np.float32), SR, subtype="FLOAT")
    m = runtime.analyse(tmp_path / "mono.wav", model, _opts(), vad)
    assert m["windows"] == r["windows"]
    for c in r["distribution"]:
        assert abs(m["distribution"][c] - r["distribution"][c]) < 0.05


def test_windows_are_classified_as_in_training(tmp_path, model):
    """A window's probabilities are those of the training-time path: serbench.audio.Preprocess ->
    speech part -> encoder -> head."""
    import onnxruntime as ort

    y = note(10.0, seed=8)
    pre = audio.Preprocess()
    sess = ort.InferenceSession(str(model.dir / runtime.MODEL_FILE), providers=["CPUExecutionProvider"])
    for a, b in [(0, 8 * SR), (3 * SR, 5 * SR)]:
        p, n = pre(y[a:b])
        x = p[: max(n, embed.MIN_SAMPLES)]
        ref = sess.run(None, {"input_values": x[None]})[0][0]
        np.testing.assert_allclose(model.probabilities(y[a:b]), ref, atol=1e-5)


def test_long_file_is_read_in_blocks_with_bounded_memory(tmp_path, model, vad):
    rng = np.random.default_rng(1)
    piece = note(30.0, seed=5)
    y = np.concatenate([piece * float(rng.uniform(0.5, 1.0)) for _ in range(12)])   # ~7 minutes
    path = tmp_path / "long.wav"
    sf.write(path, y, SR, subtype="PCM_16")
    decoded_mb = y.size * 4 / 1e6
    assert decoded_mb > 20
    stats = runtime.Stats()
    tracemalloc.start()
    try:
        r = runtime.analyse(path, model, _opts(block_seconds=5.0), vad, stats)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r["status"] == "ok" and r["windows"] > 20
    assert stats.reads >= y.size // (5 * SR) and stats.max_read_frames <= 5 * SR
    assert stats.max_buffered_samples < 3 * 8 * SR
    assert peak / 1e6 < decoded_mb / 3, f"peak {peak / 1e6:.1f} MB for a {decoded_mb:.1f} MB file"


def test_window_longer_than_training_clips_is_refused(tmp_path, model, vad):
    sf.write(tmp_path / "a.wav", note(5.0), SR)
    with pytest.raises(runtime.InferError, match="longer than the 8.0 s"):
        runtime.analyse(tmp_path / "a.wav", model, _opts(window=10.0), vad)


# ---- command line -------------------------------------------------------------------------------


def test_cli_json_shape(tmp_path, model_dir, capsys):
    sf.write(tmp_path / "n.flac", note(20.0, seed=6), SR)
    sf.write(tmp_path / "quiet.wav", np.zeros(SR * 4, np.float32), SR)
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    rc = main(["infer", str(model_dir), str(tmp_path / "n.flac"), str(tmp_path / "quiet.wav"),
               str(tmp_path / "bad.wav"), "--json", "--hop", "4"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 2                                   # one file could not be decoded
    assert doc["labels"] == ["angry", "happy", "neutral", "sad"] and doc["vad_model"]
    ok, quiet, bad = doc["results"]
    assert ok["status"] == "ok" and ok["emotion"] in doc["labels"] and ok["hop_s"] == 4.0
    assert set(ok["distribution"]) == set(doc["labels"])
    assert ok["windows"] == len(ok["timeline"]) >= 2
    for w in ok["timeline"]:
        assert {"start_s", "end_s", "speech_s", "emotion", "probabilities"} <= set(w)
        assert w["emotion"] == max(w["probabilities"], key=w["probabilities"].get)
    mean = {c: np.mean([w["probabilities"][c] for w in ok["timeline"]]) for c in doc["labels"]}
    assert all(abs(mean[c] - ok["distribution"][c]) < 1e-3 for c in doc["labels"])   # temporal pooling
    assert quiet["status"] == "no_speech" and quiet["emotion"] is None
    assert bad["status"] == "error" and "cannot decode" in bad["message"]
    assert main(["infer", str(model_dir), str(tmp_path / "n.flac")]) == 0
    text = capsys.readouterr().out
    assert "emotion:" in text and "window(s) of 8 s" in text


def test_no_vad_works_without_a_vad_model(tmp_path, model_dir, monkeypatch, capsys):
    monkeypatch.setattr(note_module, "find_vad_model", lambda *_: None)
    sf.write(tmp_path / "n.wav", note(9.0, seed=7), SR)
    assert main(["infer", str(model_dir), str(tmp_path / "n.wav"), "--no-vad", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["status"] == "ok"
    assert main(["infer", str(model_dir), str(tmp_path / "n.wav")]) == 2
    assert "--no-vad" in capsys.readouterr().err


# ---- bad input (issue 12) -----------------------------------------------------------------------


def test_nonfinite_audio_is_refused_not_classified(tmp_path, model, model_dir, capsys):
    y = note(9.0, seed=7)
    few = y.copy()
    few[SR:SR + 120] = np.nan                                   # 120 NaN samples in speech
    sf.write(tmp_path / "nan.wav", few, SR, subtype="FLOAT")
    sf.write(tmp_path / "allnan.wav", np.full(SR * 3, np.nan, np.float32), SR, subtype="FLOAT")
    late = y.copy()
    late[-5:] = np.inf                                          # only in the last block
    sf.write(tmp_path / "inf.wav", late, SR, subtype="FLOAT")
    for name, count in (("nan.wav", 120), ("allnan.wav", 3 * SR), ("inf.wav", 5)):
        with pytest.raises(runtime.InferError, match=rf"{name}: non-finite audio: {count} of \d+ samples"):
            runtime.analyse(tmp_path / name, model, _opts(vad=False, block_seconds=2.0))
    sf.write(tmp_path / "ok.wav", y, SR, subtype="FLOAT")
    rc = main(["infer", str(model_dir), str(tmp_path / "nan.wav"), str(tmp_path / "ok.wav"), "--no-vad", "--json"])
    bad, ok = json.loads(capsys.readouterr().out)["results"]
    assert rc == 2 and bad["status"] == "error" and "emotion" not in bad
    assert "120 of" in bad["message"] and "not classified" in bad["message"]
    assert ok["status"] == "ok"


def test_missing_file_folder_and_symlink_loop_say_what_they_are(tmp_path, model_dir, capsys):
    (tmp_path / "dir.wav").mkdir()
    (tmp_path / "loop.wav").symlink_to("loop.wav")
    missing = tmp_path / "nope.wav"
    rc = main(["infer", str(model_dir), str(missing), str(tmp_path / "dir.wav"), str(tmp_path / "loop.wav"),
               "--no-vad"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"no such file: {missing}" in err and "System error" not in err
    assert f"{tmp_path / 'dir.wav'}: error: {tmp_path / 'dir.wav'}: is a directory" in err
    assert "loop.wav: symlink loop" in err



def test_the_text_output_names_weights_and_training_data():
    from serbench.runtime import note as note_mod

    card = {"model": "distilhubert", "recipe": "static-int8", "run_id": 4,
            "weights": "RANDOM-INIT (seed 0), not pretrained", "data": {"synthetic": True, "corpora": {"iemocap": {}}}}
    assert note_mod.format_model(card) == ("model: distilhubert / static-int8 (run 4); weights RANDOM-INIT (seed 0), "
                                           "not pretrained; trained on SYNTHETIC data (iemocap)")
    real = {**card, "weights": "hub facebook/x", "data": {"synthetic": False, "corpora": {"ravdess": {}, "emodb": {}}}}
    assert note_mod.format_model(real).endswith("; weights hub facebook/x; trained on emodb, ravdess")
    assert "no model card" in note_mod.format_model({})


def test_a_window_is_a_span_of_the_file_and_never_joins_distant_speech(tmp_path, model, vad):
    """Two utterances 30 s apart: with VAD each is classified in the window of the file it is in,
    rather than both being glued into one window of VAD-joined speech."""
    rng = np.random.default_rng(3)
    spk = voice.random_speaker("w", "F", rng)
    a, b = voice.utterance(spk, "angry", 3.0, rng), voice.utterance(spk, "sad", 3.0, rng)
    quiet = lambda s: rng.normal(0, 0.002, int(s * SR)).astype(np.float32)  # noqa: E731
    y = np.concatenate([quiet(0.5), a, quiet(30.0), b, quiet(0.5)])
    sf.write(tmp_path / "two.wav", y, SR)
    r = runtime.analyse(tmp_path / "two.wav", model, _opts(window=8, hop=8, min_speech=1.0), vad)
    spoken = [w for w in r["timeline"] if w.get("emotion")]
    b_start = (0.5 * SR + a.size + 30.0 * SR) / SR
    assert r["windows"] == len(spoken) >= 2
    assert spoken[0]["start_s"] == 0 and spoken[0]["end_s"] == 8
    assert any(w["start_s"] <= b_start < w["end_s"] for w in spoken[1:])
    for w in r["timeline"]:   # every span is a multiple of the hop on the file, and holds only its own speech
        assert w["start_s"] % 8 == 0 and w["speech_s"] <= max(a.size, b.size) / SR + 0.1   # VAD pads 30 ms a side


def test_speech_padded_past_the_end_of_the_file_stays_aligned_with_its_positions(tmp_path, model, vad):
    """Speech that runs to the last sample: the VAD's end padding reaches past the file, and the
    samples passed on must still match their positions one to one (it once ended in an IndexError)."""
    rng = np.random.default_rng(11)
    spk = voice.random_speaker("e", "M", rng)
    y = np.concatenate([rng.normal(0, 0.002, SR).astype(np.float32), voice.utterance(spk, "angry", 3.0, rng)])
    sf.write(tmp_path / "end.wav", y, SR)
    stream = runtime.VadStream(vad)
    pieces = [p for x in np.array_split(y, 7) for p in stream.push(x)] + list(stream.finish())
    assert pieces and all(len(pos) == len(w) and pos[-1] < y.size for pos, w in pieces)
    r = runtime.analyse(tmp_path / "end.wav", model, _opts(window=3, hop=3), vad)
    assert r["status"] == "ok" and r["timeline"][-1]["end_s"] <= r["duration_s"] + 1e-3
