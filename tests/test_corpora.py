"""Each recipe reads its corpus's real layout (written by the synthetic writers) to exact counts."""
from __future__ import annotations

import json

import pytest

from serbench import corpora
from serbench.cli import main
from serbench.corpora import iemocap
from serbench.errors import SerbenchError

LABELS = ["angry", "happy", "neutral", "sad"]


def test_iemocap_counts_speakers_and_sessions(synthetic):
    m = corpora.prepare("iemocap", synthetic["iemocap"], progress=False)
    s = m.summary()
    # tiny: per speaker neu 2, hap 1, exc 1, ang 2, sad 2, fru 1, xxx 1 -> 10 files, 8 kept
    assert s["files"] == 100
    assert s["utterances"] == 80
    assert s["labels"] == {"angry": 20, "happy": 20, "neutral": 20, "sad": 20}
    assert s["dropped_by_label_map"] == {"fru": 10, "xxx": 10}
    assert s["speakers"] == 10 and s["sessions"] == 5
    assert set(m.frame["speaker"]) == {f"Ses0{n}{g}" for n in range(1, 6) for g in "FM"}
    assert s["skipped"] == 0
    # exc is merged into happy; the decoy line under EmoEvaluation/Categorical/ is ignored
    assert set(m.frame.loc[m.frame.label == "happy", "raw_label"]) == {"hap", "exc"}
    assert not m.frame["utt_id"].str.contains("decoy").any()


def test_iemocap_speaker_is_the_utterance_gender_not_the_dialog_gender(synthetic):
    m = corpora.prepare("iemocap", synthetic["iemocap"], progress=False)
    row = m.frame[m.frame.utt_id.str.startswith("Ses01F_") & m.frame.utt_id.str.contains("_M0")].iloc[0]
    assert row.speaker == "Ses01M" and row.gender == "M" and row.session == "Ses01"
    assert iemocap.UTT.match("Ses01F_impro01_M003")["gender"] == "M"


def test_iemocap_accepts_parent_folder_and_rejects_wrong_one(synthetic, tmp_path):
    m = corpora.prepare("iemocap", synthetic["iemocap"].parent, progress=False)
    assert len(m) == 80
    (tmp_path / "Session1").mkdir()
    with pytest.raises(SerbenchError, match="Session1 .. Session5.*found Session1"):
        corpora.prepare("iemocap", tmp_path)


def test_iemocap_label_without_audio_is_reported(synthetic, tmp_path):
    import shutil
    root = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(synthetic["iemocap"], root)
    victim = next((root / "Session2" / "sentences" / "wav").rglob("*.wav"))
    victim.unlink()
    m = corpora.prepare("iemocap", root, progress=False)
    assert m.summary()["files"] == 100
    assert [s.reason for s in m.skipped] == ["audio missing: labelled in EmoEvaluation but no wav"]
    assert victim.name in m.skipped[0].path


def test_crema_d_counts_and_genders_from_demographics(synthetic):
    m = corpora.prepare("crema-d", synthetic["crema-d"], progress=False)
    s = m.summary()
    # 6 actors x (IEO: 5 emotions x LO/MD/HI + NEU_XX = 16, DFA: 6 x XX) = 132 files
    assert s["files"] == 132
    assert s["labels"] == {"angry": 24, "happy": 24, "neutral": 12, "sad": 24}
    assert s["dropped_by_label_map"] == {"DIS": 24, "FEA": 24}
    assert s["speakers"] == 6 and s["sessions"] == 0
    assert s["genders"] == {"F": 42, "M": 42}
    assert set(m.frame["speaker"]) == {str(a) for a in range(1001, 1007)}


def test_ravdess_counts_calm_as_neutral_by_default_and_map_is_switchable(synthetic):
    m = corpora.prepare("ravdess", synthetic["ravdess"], progress=False)
    s = m.summary()
    # 4 actors x (neutral 2 + 7 emotions x 2 intensities x 2 statements) = 120 files
    assert s["files"] == 120 and s["speakers"] == 4
    assert s["labels"] == {"angry": 16, "happy": 16, "neutral": 24, "sad": 16}
    assert set(m.frame["sample_rate"]) == {48_000}
    nocalm = corpora.prepare("ravdess", synthetic["ravdess"], label_map="ravdess-4class-nocalm",
                             progress=False)
    assert nocalm.summary()["labels"]["neutral"] == 8
    assert nocalm.summary()["dropped_by_label_map"]["02"] == 16
    eight = corpora.prepare("ravdess", synthetic["ravdess"], label_map="ravdess-8class", progress=False)
    assert len(eight) == 120 and len(eight.classes) == 8


def test_ravdess_accepts_flac(synthetic, tmp_path):
    import soundfile as sf
    src = sorted((synthetic["ravdess"] / "Actor_01").glob("*.wav"))[:3]
    (tmp_path / "Actor_01").mkdir()
    for f in src:
        y, sr = sf.read(f)
        sf.write(tmp_path / "Actor_01" / f.with_suffix(".flac").name, y, sr)
    m = corpora.prepare("ravdess", tmp_path, label_map="ravdess-8class", progress=False)
    assert len(m) == 3 and all(p.endswith(".flac") for p in m.frame.path)


def test_emodb_counts(synthetic):
    m = corpora.prepare("emodb", synthetic["emodb"], progress=False)
    s = m.summary()
    assert s["files"] == 56 and s["utterances"] == 32
    assert s["labels"] == {c: 8 for c in LABELS}
    assert s["dropped_by_label_map"] == {"A": 8, "E": 8, "L": 8}
    assert m.frame.set_index("speaker")["gender"].to_dict() == {"03": "M", "08": "F", "09": "F", "10": "M"}


def test_manifest_csv(synthetic, tmp_path):
    wavs = sorted((synthetic["emodb"] / "wav").glob("*.wav"))[:4]
    csv = tmp_path / "mine.csv"
    lines = ["path,speaker,label,session"] + [f"{w},spk{i % 2},lbl{i % 3},s1" for i, w in enumerate(wavs)]
    lines.append(",spk9,x,s1")  # incomplete row: reported, not fatal
    csv.write_text("\n".join(lines) + "\n")
    m = corpora.prepare("manifest", csv, progress=False)
    assert len(m) == 4 and m.corpus == "mine"
    assert m.classes == ("lbl0", "lbl1", "lbl2")
    assert [s.reason for s in m.skipped] == ["empty path, speaker or label"]
    assert m.skipped[0].path.endswith("mine.csv:6")


def test_manifest_csv_missing_column(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("file,speaker\nx.wav,a\n")
    with pytest.raises(SerbenchError, match="bad.csv: missing column\\(s\\) path, label"):
        corpora.prepare("manifest", csv)


def test_manifest_hash_ignores_location_but_not_labels(synthetic):
    a = corpora.prepare("emodb", synthetic["emodb"], progress=False)
    b = corpora.prepare("emodb", synthetic["emodb"], label_map="identity", progress=False)
    assert a.content_hash() == corpora.prepare("emodb", synthetic["emodb"], progress=False).content_hash()
    assert a.content_hash() != b.content_hash()


def test_cli_corpus_json_and_table(synthetic, capsys):
    assert main(["corpus", "emodb", str(synthetic["emodb"]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["utterances"] == 32 and data["skipped"] == 0
    assert main(["corpus", "crema-d", str(synthetic["crema-d"]), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "files: 132" in out and "usable utterances: 84" in out and "DIS: 24" in out


def test_cli_corpus_wrong_folder_is_a_clear_error(synthetic, capsys):
    assert main(["corpus", "iemocap", str(synthetic["ravdess"])]) == 2
    err = capsys.readouterr().err
    assert "not an IEMOCAP release" in err and "Session1 .. Session5" in err
    assert main(["corpus", "crema-d", str(synthetic["ravdess"] / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
