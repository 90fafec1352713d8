"""Issue 23's corpus cases: misnamed folders, text encodings, out-of-range codes, CSV headers, label
and speaker spellings, the same audio under two ids, any CSV for `run`, every libsndfile format.
Each corpus is a few synthetic files written in tmp_path."""
from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serbench import corpora, protocols, sources, splits
from serbench.cli import main
from serbench.corpora import common
from serbench.errors import SerbenchError


def _tone(path: Path, freq: float = 220.0, seconds: float = 0.5, sr: int = 16_000, **kw) -> Path:
    """A sine of ``freq`` Hz written to ``path`` (distinct freqs give distinct bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, **kw)
    return path


def _csv(path: Path, header: str, rows: list[str], encoding: str = "utf-8") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding=encoding)
    return path


def _reasons(m) -> dict[str, str]:
    return {s.path.rsplit("/", 1)[-1]: s.reason for s in m.skipped}


# ---- 1. misnamed RAVDESS actor folders ------------------------------------------------------------


def test_misnamed_ravdess_actor_folders_are_listed_with_the_expected_form(tmp_path):
    _tone(tmp_path / "Actor_01" / "03-01-01-01-01-01-01.wav")
    _tone(tmp_path / "Actor_2" / "03-01-01-01-01-01-02.wav", 230)
    _tone(tmp_path / "actor_03" / "03-01-01-01-01-01-03.wav", 240)
    (tmp_path / "notes").mkdir()                                   # no audio: not a corpus folder
    m = corpora.prepare("ravdess", tmp_path, label_map="ravdess-8class", progress=False)
    assert list(m.frame["speaker"]) == ["Actor_01"]
    reasons = {s.path: s.reason for s in m.skipped}
    assert reasons == {
        str(tmp_path / "Actor_2" / "03-01-01-01-01-01-02.wav"):
            "in folder Actor_2, which is not named Actor_NN (two digits, e.g. Actor_01): not read; "
            "rename it Actor_02",
        str(tmp_path / "actor_03" / "03-01-01-01-01-01-03.wav"):
            "in folder actor_03, which is not named Actor_NN (two digits, e.g. Actor_01): not read; "
            "rename it Actor_03",
    }
    assert m.files == 3
    shutil.rmtree(tmp_path / "Actor_01")
    with pytest.raises(SerbenchError, match="expected Actor_01 .. Actor_24 under it "
                                            r"\(found Actor_2, actor_03: not in the Actor_NN form\)"):
        corpora.prepare("ravdess", tmp_path, progress=False)


# ---- 2. text files in UTF-16 (BOM), UTF-8 with BOM, or undecodable -----------------------------------


def test_iemocap_label_files_are_decoded_by_their_byte_order_mark(synthetic, tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(synthetic["iemocap"], root)
    files = sorted((root / "Session1" / "dialog" / "EmoEvaluation").glob("*.txt"))
    for txt, encoding in zip(files, ["utf-16", "utf-8-sig"]):        # utf-16: Python writes the BOM
        txt.write_bytes(txt.read_text(encoding="utf-8").encode(encoding))
    m = corpora.prepare("iemocap", root, progress=False)
    assert len(m) == 80 and m.skipped == []                         # as read from the UTF-8 copy

    broken = sorted((root / "Session2" / "dialog" / "EmoEvaluation").glob("*.txt"))
    text = broken[0].read_text(encoding="utf-8")
    broken[0].write_bytes(text.encode("utf-16-le"))                 # UTF-16 without its BOM
    broken[1].write_bytes(b"\xe9" + broken[1].read_bytes())         # a Latin-1 byte: not UTF-8
    m = corpora.prepare("iemocap", root, progress=False)
    reasons = {s.path: s.reason for s in m.skipped}
    assert reasons[str(broken[0])].startswith("label file not read, its utterances are left out: not text: "
                                              "it holds NUL bytes (UTF-16 without a byte-order mark?)")
    assert reasons[str(broken[1])] == ("label file not read, its utterances are left out: cannot decode "
                                       "as UTF-8: byte 0xe9 at offset 0; save it as UTF-8")
    assert len(reasons) == 2 and len(m) < 80


def test_crema_d_demographics_in_utf16_still_give_genders(synthetic, tmp_path):
    root = tmp_path / "crema"
    shutil.copytree(synthetic["crema-d"], root)
    demo = root / "VideoDemographics.csv"
    demo.write_bytes(demo.read_text(encoding="utf-8").encode("utf-16"))
    m = corpora.prepare("crema-d", root, progress=False)
    assert set(m.frame["gender"]) == {"F", "M"} and m.skipped == []
    demo.write_text("ActorID;Age;Sex\n1001;51;Male\n")             # genders lost: said, not silent
    m = corpora.prepare("crema-d", root, progress=False)
    assert set(m.frame["gender"]) == {""}
    assert _reasons(m) == {"VideoDemographics.csv": "not read, genders left empty: needs columns ActorID, "
                                                    "Sex; found 'ActorID;Age;Sex'"}


def test_manifest_csv_in_utf16_or_with_a_utf8_bom_is_read(tmp_path):
    a, b = _tone(tmp_path / "a.wav"), _tone(tmp_path / "b.wav", 330)
    for encoding in ("utf-16", "utf-8-sig"):
        csv = _csv(tmp_path / "m.csv", "path,speaker,label", [f"{a.name},s1,angry", f"{b.name},s2,sad"],
                   encoding)
        assert len(corpora.prepare("manifest", csv, progress=False)) == 2


# ---- 3. RAVDESS codes out of range name the field -------------------------------------------------------


def test_ravdess_codes_out_of_range_name_the_field_and_the_valid_codes(tmp_path):
    names = {
        "03-01-09-01-01-01-01": "emotion code 09 unknown (RAVDESS codes 01-08)",
        "04-01-01-01-01-01-01": "modality code 04 unknown (RAVDESS codes 01-03)",
        "03-03-01-01-01-01-01": "channel code 03 unknown (RAVDESS codes 01-02)",
        "03-01-02-03-01-01-01": "intensity code 03 unknown (RAVDESS codes 01-02)",
        "03-01-02-01-00-01-01": "statement code 00 unknown (RAVDESS codes 01-02)",
        "03-01-10-01-01-05-01": "emotion code 10 unknown (RAVDESS codes 01-08); "
                                "repetition code 05 unknown (RAVDESS codes 01-02)",
    }
    for i, stem in enumerate(names):
        _tone(tmp_path / "Actor_01" / f"{stem}.wav", 200 + 10 * i)
    _tone(tmp_path / "Actor_01" / "03-01-08-02-02-02-01.wav", 400)   # the highest codes: kept
    m = corpora.prepare("ravdess", tmp_path, label_map="ravdess-8class", progress=False)
    assert list(m.frame["utt_id"]) == ["03-01-08-02-02-02-01"]
    assert _reasons(m) == {f"{stem}.wav": why for stem, why in names.items()}


# ---- 4. manifest CSV headers: padded, other separators, and what a missing column shows ----------------


def test_manifest_csv_header_is_stripped_and_its_separator_found(tmp_path):
    a, b = _tone(tmp_path / "a.wav"), _tone(tmp_path / "b.wav", 330)
    padded = _csv(tmp_path / "padded.csv", " path , speaker ,label ", [f"{a.name},s1,angry", f"{b.name},s2,sad"])
    assert len(corpora.prepare("manifest", padded, progress=False)) == 2
    semi = _csv(tmp_path / "semi.csv", "path;speaker;label", [f"{a.name};s1;angry", f"{b.name};s2;sad"])
    assert sorted(corpora.prepare("manifest", semi, progress=False).frame["speaker"]) == ["s1", "s2"]


def test_manifest_csv_missing_column_shows_the_columns_found_and_the_separator(tmp_path):
    semi = _csv(tmp_path / "semi.csv", "file; speaker; emotion", ["a.wav;s1;angry"])
    with pytest.raises(SerbenchError) as err:
        corpora.prepare("manifest", semi, progress=False)
    assert str(err.value) == (
        f"{semi}: missing column(s) path, label (needs path, speaker, label; optional session, gender, "
        "utt_id, corpus); columns found: 'file', 'speaker', 'emotion' (it looks ';'-separated)")
    spaced = _csv(tmp_path / "spaced.csv", "path speaker label", ["a.wav s1 angry"])
    with pytest.raises(SerbenchError, match=r"columns found: 'path speaker label' \(one column: is it "
                                            r"separated by spaces\? use commas\)"):
        corpora.prepare("manifest", spaced, progress=False)
    twice = _csv(tmp_path / "twice.csv", "path,label,speaker,label ", ["a.wav,x,s1,y"])
    with pytest.raises(SerbenchError, match="twice.csv: column\\(s\\) 'label' given twice"):
        corpora.prepare("manifest", twice, progress=False)


# ---- 5. label and speaker spellings: one normal form, a warning when it merges ------------------------


def _spelled(tmp_path) -> Path:
    """A manifest CSV whose speakers and labels come in several spellings of the same strings."""
    nfd = unicodedata.normalize("NFD", "Zoé")
    rows = []
    for i, (speaker, label) in enumerate([(" Actor_01", "angry"), ("Actor_01", "angry "), ("Actor_01", "sad"),
                                          ("Zoé", "sad"), (nfd, "angry"), ("Actor_02", "Sad")]):
        rows.append(f"{_tone(tmp_path / f'{i}.wav', 200 + 20 * i).name},{speaker},{label}")
    return _csv(tmp_path / "spelled.csv", "path,speaker,label", rows)


def test_label_and_speaker_spellings_are_one_value_and_the_merge_is_said(tmp_path, capsys):
    m = corpora.prepare("manifest", _spelled(tmp_path), progress=False)
    assert m.classes == ("Sad", "angry", "sad")
    assert sorted(m.frame["speaker"].unique()) == ["Actor_01", "Actor_02", "Zoé"]
    nfd = unicodedata.normalize("NFD", "Zoé")
    assert m.warnings == [
        "speakers ' Actor_01', 'Actor_01' are read as one speaker 'Actor_01' (surrounding spaces stripped, "
        "Unicode NFC)",
        f"speakers {nfd!r}, {'Zoé'!r} are read as one speaker 'Zoé' (surrounding spaces stripped, Unicode NFC)",
        "labels 'angry', 'angry ' are read as one label 'angry' (surrounding spaces stripped, Unicode NFC)",
        "labels 'Sad', 'sad' differ only in case: kept as 2 labels",
    ]
    assert main(["corpus", "manifest", str(tmp_path / "spelled.csv"), "--quiet"]) == 0
    assert "warning: speakers ' Actor_01', 'Actor_01' are read as one speaker" in capsys.readouterr().out


def test_speaker_spellings_cannot_put_one_actor_in_train_and_test(tmp_path):
    """The leak the issue saw: ' Actor_01' and 'Actor_01' split as two speakers, audit says 0 shared."""
    rows = []
    for s in range(1, 7):
        for i in range(4):
            speaker = f" Actor_0{s}" if (s == 1 and i % 2) else f"Actor_0{s}"
            wav = _tone(tmp_path / f"{s}_{i}.wav", 100 + 40 * s + 5 * i)
            rows.append(f"{wav.name},{speaker},{'angry' if i < 2 else 'sad'}")
    csv = _csv(tmp_path / "actors.csv", "path,speaker,label", rows)
    m = corpora.prepare("manifest", csv, progress=False)
    p = protocols.load("speaker-kfold").with_corpus("actors")
    actor1 = {f"actors/1_{i}" for i in range(4)}
    for fold in p.folds({"actors": m}):
        assert fold.shared_speakers() == 0
        assert actor1 <= set(fold.test) or not actor1 & set(fold.test)   # all of Actor_01 or none


def test_label_map_keys_are_normalised_like_the_labels(tmp_path):
    a = _tone(tmp_path / "a.wav")
    csv = _csv(tmp_path / "m.csv", "path,speaker,label", [f"{a.name},s1,ang"])
    good = tmp_path / "padded.yaml"
    good.write_text("name: padded\nclasses: [angry]\nmap: {' ang ': angry}\n")
    assert list(corpora.prepare("manifest", csv, label_map=str(good), progress=False).frame["label"]) == ["angry"]
    bad = tmp_path / "clash.yaml"
    bad.write_text("name: clash\nclasses: [angry, sad]\nmap: {'ang': angry, 'ang ': sad}\n")
    with pytest.raises(SerbenchError, match="field 'map.ang ': is 'ang' once spaces are stripped, which is "
                                            "mapped to 'angry', not 'sad'"):
        corpora.prepare("manifest", csv, label_map=str(bad), progress=False)


# ---- 6. the same audio under two ids ------------------------------------------------------------------


def test_the_same_audio_under_two_ids_is_kept_once_and_listed(tmp_path):
    a = _tone(tmp_path / "a.wav")
    _tone(tmp_path / "b.wav", 330)
    shutil.copy(a, tmp_path / "a_copy.wav")
    csv = _csv(tmp_path / "dup.csv", "path,speaker,label,utt_id",
               ["a.wav,s1,angry,u1", "a.wav,s1,angry,u2", "a_copy.wav,s2,sad,u3", "b.wav,s2,sad,u4"])
    m = corpora.prepare("manifest", csv, progress=False)
    assert list(m.frame["utt_id"]) == ["u1", "u4"]
    assert sorted(s.reason for s in m.skipped) == [
        "duplicate audio: the same bytes as " + str(a) + ", kept once as u1 (u3 left out); "
        "labelled 'angry' there and 'sad' here",
        "duplicate audio: the same file, kept once as u1 (u2 left out)",
    ]
    assert m.frame["audio_hash"].str.len().eq(64).all()  # sha256 hex


def test_the_audit_reports_identical_audio_in_train_and_test(tmp_path):
    """Two corpora holding the same recording under different ids, one trained on, one tested."""
    rows = {"one": [], "two": []}
    for corpus in rows:
        for s in range(2):
            for i, label in enumerate(["angry", "angry", "sad", "sad"]):
                freq = 100 + 50 * s + 10 * i + (0 if corpus == "one" else 400)
                rows[corpus].append(f"{_tone(tmp_path / f'{corpus}{s}{i}.wav', freq).name},{corpus}{s},{label}")
    shutil.copy(tmp_path / "one00.wav", tmp_path / "two00.wav")        # the same bytes in both corpora
    csvs = {c: _csv(tmp_path / f"{c}.csv", "path,speaker,label", r) for c, r in rows.items()}
    manifests = {c: corpora.prepare("manifest", p, progress=False) for c, p in csvs.items()}
    table = splits.utterance_table(manifests)
    audit = splits._audit(table, {"train": list(table.index[:8]), "val": [], "test": list(table.index[8:])},
                          ("angry", "sad"))
    assert audit["shared_audio"]["train-test"] == {"count": 1, "utterances": ["one/one00 = two/two00"]}
    assert audit["shared_speakers"]["train-test"]["count"] == 0      # the speakers alone look clean
    proto = tmp_path / "cross.yaml"
    proto.write_text("name: cross\ndescription: one corpus against the other\ntrain: [one]\ntest: [two]\n"
                     "split: {unit: corpus, kind: cross-corpus}\n"
                     "validation: {method: holdout, unit: utterance, fraction: 0.25}\nseed: 0\n")
    with pytest.raises(SerbenchError, match=r"1 recording\(s\) are in both (train|val) and test under different ids "
                                            r"\(identical audio bytes\): one/one00 = two/two00"):
        protocols.load(proto).folds(manifests)


# ---- 7. any CSV path for `run` --------------------------------------------------------------------------


def _speakers_csv(tmp_path, name: str) -> Path:
    rows = [f"{_tone(tmp_path / f'{s}_{i}.wav', 120 + 30 * s + 7 * i).name},spk{s},{['angry', 'sad'][i % 2]}"
            for s in range(6) for i in range(4)]
    return _csv(tmp_path / name, "path,speaker,label", rows)


def test_run_reads_a_manifest_csv_of_any_name(tmp_path):
    csv = _speakers_csv(tmp_path, "my_data.csv")
    for role in ("manifest", "mine"):                 # --corpus manifest, or a name of the user's own
        src = sources.resolve((role,), {role: csv})
        m = sources.manifests(src)[role]
        assert m.corpus == role and len(m) == 24 and m.label_map == "identity"
        folds = protocols.load("speaker-kfold").with_corpus(role).folds({role: m})
        assert len(folds) == 5 and all(f.shared_speakers() == 0 for f in folds)


def test_cli_run_with_a_manifest_csv_not_called_manifest(tmp_path, capsys):
    csv = _speakers_csv(tmp_path, "recordings.csv")
    assert main(["run", "--model", "egemaps", "--protocol", "speaker-kfold", "--corpus", "manifest",
                 "--data", f"manifest={csv}", "--no-measure", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    assert run["shared_speakers_train_test"] == [0] * 5


# ---- 8. every format libsndfile reads, and the rest counted ---------------------------------------------


@pytest.mark.parametrize("suffix,fmt,subtype", [
    (".ogg", "OGG", "VORBIS"), (".opus", "OGG", "OPUS"), (".mp3", "MP3", "MPEG_LAYER_III"),
    (".aiff", "AIFF", "PCM_16"),
])
def test_ravdess_names_in_any_libsndfile_format_are_read(tmp_path, suffix, fmt, subtype):
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile has no {fmt}/{subtype}")
    sr = 48_000 if subtype == "OPUS" else 16_000                     # Opus encodes 8/12/16/24/48 kHz
    _tone(tmp_path / "Actor_01" / f"03-01-05-01-01-01-01{suffix}", sr=sr, format=fmt, subtype=subtype)
    m = corpora.prepare("ravdess", tmp_path, progress=False)
    assert list(m.frame["utt_id"]) == ["03-01-05-01-01-01-01"] and m.skipped == []
    assert m.frame["sample_rate"].iloc[0] == sr


def test_audio_libsndfile_cannot_decode_is_counted_as_skipped(tmp_path):
    _tone(tmp_path / "Actor_01" / "03-01-05-01-01-01-01.wav")
    (tmp_path / "Actor_01" / "03-01-04-01-01-01-01.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    (tmp_path / "Actor_01" / "notes.txt").write_text("not audio\n")     # not audio: not counted
    m = corpora.prepare("ravdess", tmp_path, progress=False)
    assert len(m) == 1 and m.files == 2
    assert _reasons(m)["03-01-04-01-01-01-01.m4a"].startswith(
        ".m4a audio is not decoded by this libsndfile (")
    assert ".mp3" in common.AUDIO_SUFFIXES or ".mp3" in common.UNREADABLE_SUFFIXES
