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
    assert "files: 132" in out and "usable utterances: 84" in out and " DIS 24" in out


def test_cli_corpus_wrong_folder_is_a_clear_error(synthetic, capsys):
    assert main(["corpus", "iemocap", str(synthetic["ravdess"])]) == 2
    err = capsys.readouterr().err
    assert "not an IEMOCAP release" in err and "Session1 .. Session5" in err
    assert main(["corpus", "crema-d", str(synthetic["ravdess"] / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def _iemocap_copy(synthetic, tmp_path):
    import shutil
    root = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(synthetic["iemocap"], root)
    return root


def _label_lines(txt):
    lines = txt.read_text().splitlines()
    return lines, [i for i, line in enumerate(lines) if iemocap.LINE.match(line)]


def test_iemocap_conflicting_labels_are_listed_with_both_places_and_left_out(synthetic, tmp_path):
    root = _iemocap_copy(synthetic, tmp_path)
    folder = root / "Session1" / "dialog" / "EmoEvaluation"
    a = folder / "Ses01F_impro01.txt"
    lines, idx = _label_lines(a)
    utt, label = iemocap.LINE.match(lines[idx[0]]).group("utt", "label")
    other = "sad" if label != "sad" else "ang"
    # the same turn again, with another label, in a second file of the same session
    b = folder / "Ses01F_script99.txt"                                # read after impro01
    b.write_text(f"% header\n\n[1.0000 - 2.0000]\t{utt}\t{other}\t[2.0, 2.0, 2.0]\n")
    # ... and a turn repeated with the *same* label is harmless and kept
    utt2, label2 = iemocap.LINE.match(lines[idx[1]]).group("utt", "label")
    (folder / "Ses01F_same.txt").write_text(f"[1.0000 - 2.0000]\t{utt2}\t{label2}\t[2.0, 2.0, 2.0]\n")
    m = corpora.prepare("iemocap", root, progress=False)
    assert [(s.path, s.reason) for s in m.skipped] == [(
        f"{a}:{idx[0] + 1}",
        f"conflicting labels: {utt} is {label!r} at {a}:{idx[0] + 1}, {other!r} at {b}:3; "
        "left out (its label is unknown)",
    )]
    assert utt not in set(m.frame["utt_id"])
    assert utt2 in set(m.frame["utt_id"]) or label2 in ("fru", "xxx")
    assert m.summary()["skipped_by_reason"] == {"conflicting labels": 1}


def test_iemocap_malformed_label_lines_are_listed_with_file_line_and_reason(synthetic, tmp_path):
    root = _iemocap_copy(synthetic, tmp_path)
    txt = root / "Session2" / "dialog" / "EmoEvaluation" / "Ses02F_impro01.txt"
    lines, idx = _label_lines(txt)
    broken = {}
    spaces = lines[idx[0]].replace("\t", " ")                            # spaces instead of tabs
    no_vad = lines[idx[1]].rsplit("\t", 1)[0]                            # no [V, A, D] bracket
    no_time = lines[idx[2]].split("]", 1)[1].lstrip("\t")                # no [START - END] bracket
    for i, new in zip(idx[:3], (spaces, no_vad, no_time)):
        lines[i] = new
        broken[i + 1] = iemocap.LINE.match(txt.read_text().splitlines()[i])["utt"]
    txt.write_text("\n".join(lines) + "\n")
    m = corpora.prepare("iemocap", root, progress=False)
    got = {s.path: s.reason for s in m.skipped}
    assert set(got) == {f"{txt}:{n}" for n in broken}
    assert got[f"{txt}:{idx[0] + 1}"].startswith("malformed label line: fields separated by spaces, not tabs")
    assert got[f"{txt}:{idx[1] + 1}"].startswith("malformed label line: no [V, A, D] bracket")
    assert got[f"{txt}:{idx[2] + 1}"].startswith("malformed label line: no [START - END] time bracket")
    for n, utt in broken.items():
        assert utt in got[f"{txt}:{n}"]                                  # the line is quoted
        assert utt not in set(m.frame["utt_id"])
    # the annotator lines, the header and the blank lines are not turns: nothing else is listed
    assert m.summary()["skipped_by_reason"] == {"malformed label line": 3}
    assert m.summary()["files"] == 100


def test_what_a_label_map_drops_is_named_by_class_and_counted(synthetic, capsys):
    nocalm = corpora.prepare("ravdess", synthetic["ravdess"], label_map="ravdess-4class-nocalm", progress=False)
    eight = corpora.prepare("ravdess", synthetic["ravdess"], label_map="ravdess-8class", progress=False)
    per = eight.frame["raw_label"].value_counts()
    dropped = {raw: int(per[raw]) for raw in ("02", "06", "07", "08") if raw in per}
    assert nocalm.dropped == dropped and dropped
    text = corpora.dropped_text("ravdess", nocalm)
    assert text.startswith(f"ravdess: label map ravdess-4class-nocalm dropped {sum(dropped.values())} of "
                           f"{len(eight)} utterances")
    for raw, name in (("02", "calm"), ("06", "fearful")):
        if raw in dropped:
            assert f"{name} ({raw}) {dropped[raw]}" in text
    assert corpora.dropped_text("ravdess", eight) is None
    assert main(["corpus", "ravdess", str(synthetic["ravdess"]), "--label-map", "ravdess-4class-nocalm",
                 "--quiet"]) == 0
    assert text in capsys.readouterr().out
