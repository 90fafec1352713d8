"""Bad files are loaded correctly or skipped with a reason naming them; nothing else is lost."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from serbench import audio, corpora
from serbench.cli import main


@pytest.fixture()
def messy_ravdess(synthetic, tmp_path):
    """A RAVDESS tree with 4 good clips and every kind of bad file the issue lists."""
    actor = tmp_path / "Actor_01"
    actor.mkdir()
    good = sorted((synthetic["ravdess"] / "Actor_01").glob("03-01-0[1-5]-*.wav"))[:4]
    for f in good:
        shutil.copy(f, actor / f.name)
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(44_100) / 44_100)).astype(np.float32)
    (actor / "03-01-03-01-01-01-01.wav").write_bytes(b"")                            # empty file
    (actor / "03-01-03-01-02-01-01.wav").write_text("this is not audio\n")           # text as .wav
    blob = (actor / good[0].name).read_bytes()
    (actor / "03-01-04-01-01-01-01.wav").write_bytes(blob[:30])                      # truncated header
    sf.write(actor / "03-01-04-01-02-01-01.wav", np.zeros(0, np.float32), 16_000)    # zero-length
    sf.write(actor / "recording_final.wav", tone, 44_100)                            # unparseable name
    sf.write(actor / "03-01-05-02-01-01-01.wav", tone, 44_100, subtype="PCM_U8")     # 8-bit PCM
    sf.write(actor / "03-01-05-02-02-01-01.wav", np.stack([tone, tone * 0.5], 1), 44_100)  # 44.1k stereo
    return tmp_path, {f.name for f in good}


def test_bad_files_are_skipped_with_reasons_and_good_ones_kept(messy_ravdess):
    root, good = messy_ravdess
    m = corpora.prepare("ravdess", root, label_map="ravdess-8class", progress=False)
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in m.skipped}
    assert reasons["03-01-03-01-01-01-01.wav"] == "empty file (0 bytes)"
    assert reasons["03-01-03-01-02-01-01.wav"].startswith("not readable audio")
    assert reasons["03-01-04-01-01-01-01.wav"].startswith("not readable audio")
    assert reasons["03-01-04-01-02-01-01.wav"] == "no audio frames (zero-length audio)"
    assert "RAVDESS's 03-01-EE-II-SS-RR-AA form" in reasons["recording_final.wav"]
    assert len(reasons) == 5 and m.summary()["skipped"] == 5
    kept = set(m.frame["utt_id"] + ".wav")
    assert good | {"03-01-05-02-01-01-01.wav", "03-01-05-02-02-01-01.wav"} == kept
    assert m.summary()["files"] == 11


def test_8bit_and_stereo_44k_load_as_16k_mono(messy_ravdess):
    root, _ = messy_ravdess
    for name in ("03-01-05-02-01-01-01.wav", "03-01-05-02-02-01-01.wav"):
        y = audio.load(root / "Actor_01" / name)
        assert y.ndim == 1 and y.dtype == np.float32 and abs(len(y) - 16_000) <= 1
        spectrum = np.abs(np.fft.rfft(y))
        assert abs(np.argmax(spectrum) * 16_000 / len(y) - 220) < 2   # the tone survives resampling


def test_load_of_a_bad_file_names_it(messy_ravdess):
    root, _ = messy_ravdess
    with pytest.raises(audio.AudioError, match="03-01-03-01-02-01-01.wav: cannot decode audio"):
        audio.load(root / "Actor_01" / "03-01-03-01-02-01-01.wav")
    with pytest.raises(audio.AudioError, match="zero-length"):
        audio.load(root / "Actor_01" / "03-01-04-01-02-01-01.wav")


def test_cli_summary_counts_skipped(messy_ravdess, capsys):
    root, _ = messy_ravdess
    assert main(["corpus", "ravdess", str(root), "--quiet", "--label-map", "ravdess-8class"]) == 0
    out = capsys.readouterr().out
    assert "skipped: 5" in out and "empty file (0 bytes)" in out and "recording_final.wav" in out


# ---- issue 12: non-finite, truncated, duplicate formats, symlink loops and folders ---------------


def _tone(seconds=1.0, sr=16_000, freq=220.0):
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def _ravdess_actor(tmp_path):
    actor = tmp_path / "Actor_01"
    actor.mkdir()
    return actor


def test_nonfinite_float_wav_is_refused_by_load_and_skipped_by_scan(tmp_path):
    actor = _ravdess_actor(tmp_path)
    y = _tone()
    sf.write(actor / "03-01-01-01-01-01-01.wav", y, 16_000, subtype="FLOAT")          # clean
    few = y.copy()
    few[1000:1120] = np.nan
    sf.write(actor / "03-01-02-01-01-01-01.wav", few, 16_000, subtype="FLOAT")        # 120 NaN
    inf = y.copy()
    inf[[5, 6, 7]] = [np.inf, -np.inf, np.inf]
    sf.write(actor / "03-01-03-01-01-01-01.wav", inf, 16_000, subtype="DOUBLE")       # 3 inf
    sf.write(actor / "03-01-04-01-01-01-01.wav", np.full(16_000, np.nan, np.float32), 16_000,
             subtype="FLOAT")                                                         # all NaN
    stereo = np.stack([y, y], 1)
    stereo[10, 1] = np.nan
    sf.write(actor / "03-01-05-01-01-01-01.wav", stereo, 16_000, subtype="FLOAT")     # 1 of 32000
    with pytest.raises(audio.AudioError, match=r"03-01-02-01-01-01-01.wav: non-finite audio: "
                                               r"120 of 16000 samples are NaN or inf"):
        audio.load(actor / "03-01-02-01-01-01-01.wav")
    with pytest.raises(audio.AudioError, match="16000 of 16000 samples"):
        audio.load(actor / "03-01-04-01-01-01-01.wav")
    m = corpora.prepare("ravdess", tmp_path, label_map="ravdess-8class", progress=False)
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in m.skipped}
    assert reasons == {
        "03-01-02-01-01-01-01.wav": "non-finite audio: 120 of 16000 samples are NaN or inf",
        "03-01-03-01-01-01-01.wav": "non-finite audio: 3 of 16000 samples are NaN or inf",
        "03-01-04-01-01-01-01.wav": "non-finite audio: 16000 of 16000 samples are NaN or inf",
        "03-01-05-01-01-01-01.wav": "non-finite audio: 1 of 32000 samples are NaN or inf",
    }
    assert list(m.frame["utt_id"]) == ["03-01-01-01-01-01-01"]
    assert np.isfinite(audio.load(actor / "03-01-01-01-01-01-01.wav")).all()


def test_truncated_wav_and_flac_are_skipped_with_header_and_present_frames(tmp_path):
    actor = _ravdess_actor(tmp_path)
    y = _tone()
    for name, subtype in (("03-01-01-01-01-01-01.wav", "PCM_16"), ("03-01-02-01-01-01-01.wav", "FLOAT")):
        sf.write(actor / name, y, 16_000, subtype=subtype)
        blob = (actor / name).read_bytes()
        (actor / name).write_bytes(blob[: len(blob) // 2])                  # data cut, header intact
    sf.write(tmp_path / "x.flac", y, 16_000)
    blob = (tmp_path / "x.flac").read_bytes()
    (actor / "03-01-03-01-01-01-01.flac").write_bytes(blob[: len(blob) // 2])
    sf.write(actor / "03-01-04-01-01-01-01.wav", y, 16_000)                 # intact
    sf.write(actor / "03-01-05-01-01-01-01.flac", y, 16_000)                # intact
    m = corpora.prepare("ravdess", tmp_path, label_map="ravdess-8class", progress=False)
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in m.skipped}
    # 44-byte header + 16,000 frames of 2 bytes, cut to 16,022 bytes: 7,989 whole frames left
    assert reasons["03-01-01-01-01-01-01.wav"] == "truncated: header says 16000 frames, file holds 7989"
    assert reasons["03-01-02-01-01-01-01.wav"].startswith("truncated: header says 16000 frames, file holds 79")
    assert reasons["03-01-03-01-01-01-01.flac"].startswith("truncated or corrupt: header says 16000 frames")
    assert len(reasons) == 3
    assert sorted(m.frame["utt_id"]) == ["03-01-04-01-01-01-01", "03-01-05-01-01-01-01"]
    with pytest.raises(audio.AudioError, match="03-01-01-01-01-01-01.wav: truncated: header says 16000"):
        audio.load(actor / "03-01-01-01-01-01-01.wav")


def test_streamed_wav_without_a_data_size_is_not_called_truncated(tmp_path):
    path = tmp_path / "streamed.wav"
    sf.write(path, _tone(), 16_000)
    blob = bytearray(path.read_bytes())
    blob[40:44] = b"\xff\xff\xff\xff"            # data size left unset, as a streaming writer does
    path.write_bytes(bytes(blob))
    assert audio.wav_truncation(path) is None
    assert audio.load(path).size == 16_000


def _write_corpus_file(kind, tmp_path, stem, suffix, data=None):
    """One file named ``stem + suffix`` where corpus ``kind`` looks for it; returns the root."""
    folder = {"crema-d": tmp_path / "AudioWAV", "ravdess": tmp_path / "Actor_01", "emodb": tmp_path / "wav"}[kind]
    folder.mkdir(exist_ok=True)
    if data is None:
        sf.write(folder / (stem + suffix), _tone(), 16_000)
    else:
        (folder / (stem + suffix)).write_bytes(data)
    return folder


STEMS = {"crema-d": ["1001_DFA_ANG_XX", "1001_IEO_SAD_HI"],
         "ravdess": ["03-01-05-01-01-01-01", "03-01-04-01-01-01-01"],
         "emodb": ["03a01Wa", "03a02Ta"]}


@pytest.mark.parametrize("kind", ["crema-d", "ravdess", "emodb"])
def test_wav_beside_flac_keeps_the_wav_and_lists_the_flac(kind, tmp_path, capsys):
    a, b = STEMS[kind]
    _write_corpus_file(kind, tmp_path, a, ".wav")
    _write_corpus_file(kind, tmp_path, a, ".flac")
    _write_corpus_file(kind, tmp_path, b, ".wav", data=b"")          # an empty .wav ...
    folder = _write_corpus_file(kind, tmp_path, b, ".flac")          # ... beside a good .flac
    m = corpora.prepare(kind, tmp_path, progress=False)
    assert set(m.frame["path"]) == {str(folder / f"{a}.wav"), str(folder / f"{b}.flac")}
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in m.skipped}
    assert reasons == {
        f"{a}.flac": f"duplicate: {a}.wav is the same utterance ({a}) and is used instead "
                     "(.wav is preferred over .flac)",
        f"{b}.wav": "empty file (0 bytes)",
    }
    assert m.files == 4
    assert main(["corpus", kind, str(tmp_path), "--quiet"]) == 0
    assert "skipped: 2" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["crema-d", "ravdess", "emodb"])
def test_symlink_loop_and_folder_named_like_a_wav_are_listed_with_what_they_are(kind, tmp_path):
    a, b = STEMS[kind]
    folder = _write_corpus_file(kind, tmp_path, a, ".wav")
    (folder / f"{b}.wav").mkdir()                                              # a folder x.wav/
    loop = folder / f"{b}.flac"
    loop.symlink_to(loop.name)                                                 # points to itself
    (folder / "zz.wav").symlink_to("gone.wav")                                 # dangling
    m = corpora.prepare(kind, tmp_path, progress=False)
    assert list(m.frame["utt_id"]) == [a]
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in m.skipped}
    assert reasons[f"{b}.wav"] == "is a directory, not an audio file"
    assert reasons[f"{b}.flac"].startswith("symlink loop")
    assert "zz.wav" in reasons                                                 # bad name, but listed
    assert m.files == 4


def test_iemocap_folder_or_symlink_loop_instead_of_a_wav_is_not_called_missing(synthetic, tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(synthetic["iemocap"], root)
    wavs = sorted((root / "Session3" / "sentences" / "wav").rglob("*.wav"))
    wavs[0].unlink()
    wavs[0].mkdir()
    wavs[1].unlink()
    wavs[1].symlink_to(wavs[1].name)
    m = corpora.prepare("iemocap", root, progress=False)
    reasons = {s.path: s.reason for s in m.skipped}
    assert reasons[str(wavs[0])] == "is a directory, not an audio file"
    assert reasons[str(wavs[1])].startswith("symlink loop")
    assert len(reasons) == 2 and m.summary()["files"] == 100
