from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from serbench import protocols, splits
from serbench.errors import SerbenchError
from serbench.manifest import Manifest

CLASSES = ("angry", "happy", "neutral", "sad")
SHIPPED = {"loso", "loso-crema", "kfold-random", "speaker-kfold", "leave-one-speaker-out",
           "cross-corpus-ravdess", "production"}


def manifest(corpus: str, rows: list[dict], label_map: str | None = None) -> Manifest:
    """A Manifest from a list of dicts with utt_id, speaker, label (+ optional session)."""
    full = [{
        "utt_id": r["utt_id"], "path": f"/nowhere/{r['utt_id']}.wav", "corpus": corpus,
        "speaker": r["speaker"], "session": r.get("session", ""), "gender": "",
        "label": r["label"], "raw_label": r["label"], "duration": 1.0, "sample_rate": 16000,
    } for r in rows]
    return Manifest(corpus=corpus, root="/nowhere", label_map=label_map or f"{corpus}-4class",
                    frame=pd.DataFrame(full), classes=CLASSES)


def iemocap(per_class: int = 6) -> Manifest:
    rows = []
    for s in range(1, 6):
        for g in "FM":
            for c in CLASSES:
                for i in range(per_class):
                    rows.append({"utt_id": f"Ses0{s}{g}_impro_{c}_{g}{i:03d}", "speaker": f"Ses0{s}{g}",
                                 "session": f"Ses0{s}", "label": c})
    return manifest("iemocap", rows)


def acted(corpus: str, speakers: list[str], per_class: int = 3, label_map: str | None = None) -> Manifest:
    rows = [{"utt_id": f"{sp}_{c}_{i}", "speaker": sp, "label": c}
            for sp in speakers for c in CLASSES for i in range(per_class)]
    return manifest(corpus, rows, label_map)


@pytest.fixture(scope="module")
def corpora() -> dict[str, Manifest]:
    return {
        "iemocap": iemocap(),
        "crema-d": acted("crema-d", [str(1001 + i) for i in range(8)]),
        "ravdess": acted("ravdess", [f"Actor_{i:02d}" for i in range(1, 13)]),
        "emodb": acted("emodb", ["03", "08", "09", "10", "11"]),
    }


def covered(fold) -> set[str]:
    return set(fold.train) | set(fold.val) | set(fold.test)


def test_shipped_protocols_load():
    assert SHIPPED <= set(protocols.available())
    for name in SHIPPED:
        p = protocols.load(name)
        assert p.name == name and p.description and p.text
    assert protocols.load("cross-corpus-ravdess").label_map("ravdess") == "ravdess-4class"
    assert protocols.load("loso").label_map("iemocap") == "iemocap-4class"


def test_unknown_protocol_lists_known():
    with pytest.raises(SerbenchError, match="unknown protocol 'losso'.*kfold-random.*loso"):
        protocols.load("losso")


def test_loso_is_three_one_one_by_session(corpora):
    folds = protocols.load("loso").folds(corpora)
    assert [f.name for f in folds] == ["Ses01", "Ses02", "Ses03", "Ses04", "Ses05"]
    table = splits.utterance_table({"iemocap": corpora["iemocap"]})
    for k, fold in enumerate(folds):
        sessions = {part: set(table.loc[list(getattr(fold, part)), "session"]) for part in ("train", "val", "test")}
        assert sessions["test"] == {f"iemocap/Ses0{k + 1}"}
        assert sessions["val"] == {f"iemocap/Ses0{(k + 1) % 5 + 1}"}  # the next session, cyclically
        assert len(sessions["train"]) == 3
        assert covered(fold) == set(table.index)
        assert all(u.startswith("iemocap/Ses0") for u in fold.test)
        for pair in ("train-val", "train-test", "val-test"):
            assert fold.audit["shared_speakers"][pair]["count"] == 0
        assert fold.audit["sizes"] == {"train": 144, "val": 48, "test": 48}
        assert fold.audit["classes"]["test"] == {c: 12 for c in CLASSES}
        assert fold.audit["held_out"] == {"test": [f"iemocap/Ses0{k + 1}"], "val": [f"iemocap/Ses0{(k + 1) % 5 + 1}"]}


def test_loso_crema_adds_crema_to_training_only(corpora):
    folds = protocols.load("loso-crema").folds(corpora)
    n_crema = len(corpora["crema-d"])
    for fold in folds:
        assert fold.audit["corpora"]["train"] == {"crema-d": n_crema, "iemocap": 144}
        assert fold.audit["corpora"]["val"] == {"iemocap": 48}
        assert fold.audit["corpora"]["test"] == {"iemocap": 48}
        assert fold.shared_speakers() == 0


def test_kfold_random_leaks_speakers_and_is_stratified(corpora):
    p = protocols.load("kfold-random")
    folds = p.folds(corpora)
    assert len(folds) == 5 and not p.speaker_independent
    tests = [set(f.test) for f in folds]
    assert set().union(*tests) == set(splits.utterance_table({"iemocap": corpora["iemocap"]}).index)
    assert sum(map(len, tests)) == len(corpora["iemocap"])  # test sets partition the corpus
    for fold in folds:
        assert fold.shared_speakers() > 0
        assert fold.audit["classes"]["test"] == {c: 12 for c in CLASSES}  # 60 per class / 5
        assert not set(fold.val) & set(fold.test)
        assert fold.audit["sizes"]["val"] == pytest.approx(0.1 * (240 - 48), abs=1)
        val_counts = fold.audit["classes"]["val"].values()
        assert max(val_counts) - min(val_counts) <= 1  # stratified carve


def test_splits_are_deterministic_given_seed(corpora):
    for name in ("kfold-random", "speaker-kfold", "production"):
        p = protocols.load(name)
        assert p.folds(corpora) == p.folds(corpora)
        assert p.folds(corpora, seed=1) != p.folds(corpora)


def test_speaker_kfold_keeps_speakers_disjoint(corpora):
    folds = protocols.load("speaker-kfold").folds(corpora)
    table = splits.utterance_table({"ravdess": corpora["ravdess"]})
    test_speakers = []
    for fold in folds:
        for pair in ("train-val", "train-test", "val-test"):
            assert fold.audit["shared_speakers"][pair]["count"] == 0
        assert fold.audit["speakers"]["val"] >= 1
        test_speakers += sorted(set(table.loc[list(fold.test), "speaker"]))
    assert sorted(test_speakers) == sorted(table["speaker"].unique())  # each speaker tested once


def test_leave_one_speaker_out_and_with_corpus(corpora):
    p = protocols.load("leave-one-speaker-out")
    folds = p.folds(corpora)
    assert [f.name for f in folds] == ["03", "08", "09", "10", "11"]
    for fold in folds:
        assert fold.audit["speakers"] == {"train": 3, "val": 1, "test": 1}
        assert fold.audit["shared_speakers"]["train-val"]["count"] == 0
    on_ravdess = p.with_corpus("ravdess").folds(corpora)
    assert len(on_ravdess) == 12 and all(f.test[0].startswith("ravdess/") for f in on_ravdess)


def test_cross_corpus_validates_on_training_corpora(corpora):
    folds = protocols.load("cross-corpus-ravdess").folds(corpora)
    assert len(folds) == 1
    fold = folds[0]
    assert fold.audit["corpora"]["test"] == {"ravdess": len(corpora["ravdess"])}
    assert set(fold.audit["corpora"]["val"]) <= {"iemocap", "crema-d"}
    assert not any(u.startswith("ravdess/") for u in fold.train + fold.val)
    for pair in ("train-val", "train-test", "val-test"):
        assert fold.audit["shared_speakers"][pair]["count"] == 0
    assert 1 <= fold.audit["speakers"]["val"] <= 3  # ~10% of 18 training speakers


def test_cross_corpus_needs_the_named_label_map(corpora):
    wrong = dict(corpora, ravdess=acted("ravdess", ["Actor_01", "Actor_02"], label_map="ravdess-4class-nocalm"))
    with pytest.raises(SerbenchError, match="ravdess-4class"):
        protocols.load("cross-corpus-ravdess").folds(wrong)


def test_production_is_95_5_and_audit_shows_leak(corpora):
    fold, = protocols.load("production").folds(corpora)
    assert fold.audit["sizes"]["test"] == 12  # 5% of 240
    assert fold.audit["sizes"]["val"] == pytest.approx(0.05 * 228, abs=1)
    assert fold.shared_speakers() > 0
    assert not set(fold.val) & set(fold.test)


def test_missing_corpus_is_named(corpora):
    with pytest.raises(SerbenchError, match="'crema-d' \\(role: train-only\\)"):
        protocols.load("loso-crema").folds({"iemocap": corpora["iemocap"]})
    with pytest.raises(SerbenchError, match="'ravdess' \\(role: test\\)"):
        protocols.load("cross-corpus-ravdess").folds({k: corpora[k] for k in ("iemocap", "crema-d")})


def test_session_split_needs_sessions(corpora):
    with pytest.raises(SerbenchError, match="by session.*ravdess"):
        protocols.load("loso").with_corpus("ravdess").folds(corpora)


def test_speaker_in_two_sessions_breaks_loso():
    m = iemocap()
    frame = m.frame.copy()
    frame.loc[frame["utt_id"].str.startswith("Ses02F"), "speaker"] = "Ses01F"  # one actor, two sessions
    leaky = Manifest("iemocap", "/nowhere", "iemocap-4class", frame, CLASSES)
    with pytest.raises(SerbenchError, match="speaker-independent.*iemocap/Ses01F"):
        protocols.load("loso").folds({"iemocap": leaky})


def test_ids_and_speakers_are_qualified_by_corpus(tmp_path):
    # both corpora use utt id "x_<class>_0" and speaker codes "01", "02": they must not collide
    a = acted("alpha", ["01", "02", "03"], label_map="identity")
    b = acted("beta", ["01", "02"], label_map="identity")
    path = tmp_path / "ab.yaml"
    path.write_text(yaml.safe_dump({
        "name": "ab", "description": "alpha -> beta", "train": ["alpha"], "test": ["beta"],
        "split": {"unit": "corpus", "kind": "cross-corpus"},
        "validation": {"method": "holdout", "unit": "speaker", "fraction": 0.3},
    }))
    fold, = protocols.load(path).folds({"alpha": a, "beta": b})
    assert "beta/01_angry_0" in fold.test and "alpha/01_angry_0" in fold.train + fold.val
    assert fold.shared_speakers() == 0
    assert len(covered(fold)) == len(a) + len(b)


def write(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(Path(protocols.available()["loso"]).read_text())
    data["name"] = "p"
    for key, value in changes.items():
        parts = key.split("__")
        target = data
        for part in parts[:-1]:
            target = target[part]
        if value is None:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = value
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("changes, field", [
    ({"folds": 5}, "'folds'"),
    ({"description": None}, "'description'"),
    ({"split__kind": "shuffle"}, "'split.kind'"),
    ({"split__unit": "utterance"}, "'split.unit'"),
    ({"split__kind": "kfold", "split__n_folds": None, "validation__method": "holdout"}, "'split.n_folds'"),
    ({"split__kind": "kfold"}, "'validation.method'"),
    ({"validation": {"method": "holdout", "unit": "speaker", "fraction": 1.5}}, "'validation.fraction'"),
    ({"validation": {"method": "holdout", "unit": "speaker"}}, "'validation.fraction'"),
    ({"label_maps": {"iemocap": "no-such-map"}}, "'label_maps.iemocap'"),
    ({"label_maps": {"ravdess": "ravdess-4class"}}, "'label_maps.ravdess'"),
    ({"train": ["crema-d"], "test": ["ravdess"]}, "'corpus'"),
    ({"train_only": ["iemocap"]}, "'train_only'"),
    ({"seed": "zero"}, "'seed'"),
    ({"split__test_fraction": 0.1}, "'split.test_fraction'"),
])
def test_malformed_file_names_file_and_field(tmp_path, changes, field):
    path = write(tmp_path, **changes)
    with pytest.raises(SerbenchError) as err:
        protocols.load(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_not_yaml_and_wrong_name(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SerbenchError, match="not valid YAML"):
        protocols.load(bad)
    path = write(tmp_path)
    renamed = path.with_name("other.yaml")
    path.rename(renamed)
    with pytest.raises(SerbenchError, match="'name'.*must match the file name"):
        protocols.load(renamed)


def test_class_counts_add_up(corpora):
    for name in SHIPPED:
        p = protocols.load(name)
        for fold in p.folds(corpora):
            for part in ("train", "val", "test"):
                assert sum(fold.audit["classes"][part].values()) == fold.audit["sizes"][part]
            assert Counter(covered(fold)) == Counter(fold.train + fold.val + fold.test)  # no duplicates


def test_a_fold_is_labelled_by_index_and_what_it_tests(corpora):
    loso = protocols.load("loso").folds(corpora)
    assert [f.label for f in loso] == [f"fold {f.index} ({f.name})" for f in loso] and "Ses01" in loso[0].label
    kfold = protocols.load("kfold-random").folds(corpora)
    assert [f.label for f in kfold] == [f"fold {i} of {len(kfold)}" for i in range(len(kfold))]
