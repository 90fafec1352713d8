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
