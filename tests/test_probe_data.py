"""`serbench bench --probe-data NAME=PATH`: fidelity on the user's corpus, calibration on other speakers.

The tiny synthetic RAVDESS (real layout) stands in for the user's data. Expected speakers, clips
and waves come from reading that corpus independently of the code under test.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import serbench
from serbench import audio, corpora, embed, probe_sets, registry
from serbench.artefacts import cache
from serbench.cli import main
from serbench.errors import SerbenchError
from serbench.recipe_bench import bench

QUICK = {"repeats": 1, "warmup": 0, "threads": 1, "energy": False, "rss": False}


def speaker_of(root) -> dict[str, str]:
    """``ravdess/<utt_id>`` -> speaker, from the corpus recipe."""
    frame = corpora.prepare("ravdess", root, progress=False).frame
    return {f"ravdess/{u}": s for u, s in zip(frame["utt_id"], frame["speaker"])}


@pytest.fixture(scope="module")
def benched(synthetic, tmp_path_factory):
    """static-int8 and dynamic-int8 benched twice in one home: on the synthetic probe set, and with
    the tiny RAVDESS as probe data."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERBENCH_HOME", str(tmp_path_factory.mktemp("probe_home")))
        args = ("tiny", ["static-int8", "dynamic-int8"], "random:0")
        corpus = bench(*args, probe=6, calibration=8, probe_data=f"ravdess={synthetic['ravdess']}", **QUICK)
        synth = bench(*args, probe=6, calibration=8, **QUICK)
        yield {"corpus": corpus, "synthetic": synth, "root": synthetic["ravdess"]}


def test_probe_and_calibration_speakers_never_overlap(benched):
    res, spk = benched["corpus"], speaker_of(benched["root"])
    static = {r["recipe"]: r for r in res["rows"]}["static-int8"]
    probe_speakers = {spk[i] for i in res["probe_ids"]}
    cal_speakers = {spk[i] for i in static["calibration_ids"]}
    assert len(res["probe_ids"]) == 6 and res["calibration_offered"] == 8
    assert static["calibration_ids"] and probe_speakers and cal_speakers
    assert not probe_speakers & cal_speakers
    assert not set(res["probe_ids"]) & set(static["calibration_ids"])
    assert sorted(probe_speakers) == res["probe"]["probe_speakers"]
    held = set(res["probe"]["calibration_held_out_speakers"])
    assert cal_speakers <= held and not held & probe_speakers and held | probe_speakers <= set(spk.values())


def test_the_result_names_what_fidelity_was_measured_on(benched):
    res, root = benched["corpus"], benched["root"]
    n_probe_spk = len(set(res["probe"]["probe_speakers"]))
    n_cal_spk = len(res["probe"]["calibration_speakers"])
    assert res["probe"]["kind"] == "corpus" and res["probe"]["corpus"] == "ravdess"
    assert res["probe"]["description"] == (f"probe: ravdess at {root}, 6 clips of {n_probe_spk} speakers; "
                                           f"calibration: 8 clips of {n_cal_spk} other speakers")
    synth = benched["synthetic"]["probe"]
    assert synth["kind"] == "synthetic" and synth["description"].startswith("probe: synthetic, 6 clips")
    assert benched["synthetic"]["probe_ids"][0].startswith("synth.voice.probe_clips(seed=0)")


def test_fidelity_is_measured_on_the_other_clips_and_the_reference_stays_one(benched):
    corpus = {r["recipe"]: r for r in benched["corpus"]["rows"]}
    synth = {r["recipe"]: r for r in benched["synthetic"]["rows"]}
    for rows in (corpus, synth):
        assert rows["fp32"]["fidelity"]["centered_cosine"] == pytest.approx(1.0)
        assert rows["fp32"]["fidelity"]["probe_clips"] == 6
    for name in ("dynamic-int8", "static-int8"):
        assert corpus[name]["fidelity"]["centered_cosine"] != synth[name]["fidelity"]["centered_cosine"]
    # the same artefact for the uncalibrated recipe, so the difference is the clips, not the model
    assert corpus["dynamic-int8"]["artefact"] == synth["dynamic-int8"]["artefact"]


def test_calibration_on_user_data_gets_its_own_artefact(benched):
    corpus = {r["recipe"]: r for r in benched["corpus"]["rows"]}["static-int8"]
    synth = {r["recipe"]: r for r in benched["synthetic"]["rows"]}["static-int8"]
    assert corpus["calibration_ids"] != synth["calibration_ids"]
    assert all(i.startswith("ravdess/") for i in corpus["calibration_ids"])
    a, b = cache.load(corpus["artefact"]), cache.load(synth["artefact"])
    assert a.provenance["calibration_ids"] == corpus["calibration_ids"]
    assert a.provenance["key"] != b.provenance["key"] and a.path != b.path
    entry, recipe = registry.load_model("tiny"), registry.load_recipe("static-int8")
    assert a.provenance["key"] == cache.artefact_key(entry, recipe, a.provenance["weights"], corpus["calibration_ids"])


def test_clips_are_fed_as_serbench_run_feeds_them(synthetic):
    """Each probe clip is the utterance's speech segment under the model entry's own `input`
    preprocessing (egemaps switches every step off, tiny keeps the paper's)."""
    root, frame = synthetic["ravdess"], corpora.prepare("ravdess", synthetic["ravdess"], progress=False).frame
    path = dict(zip("ravdess/" + frame["utt_id"], frame["path"]))
    for model in ("tiny", "egemaps"):
        entry = registry.load_model(model)
        pset = probe_sets.from_corpus(f"ravdess={root}", entry, probe=3, calibration=2)
        prep = audio.Preprocess(sample_rate=entry.sample_rate, **entry.input)
        for wave, uid in zip(pset.probe + pset.calibration, pset.probe_ids + pset.calibration_ids):
            np.testing.assert_array_equal(wave, embed.speech_segment(path[uid], prep))
    tiny = probe_sets.from_corpus(f"ravdess={root}", registry.load_model("tiny"), probe=3, calibration=2)
    assert not np.array_equal(tiny.probe[0], pset.probe[0])   # egemaps's own input differs
    assert tiny.probe_ids == pset.probe_ids


def test_the_probe_set_is_seeded_and_does_not_depend_on_calibration(synthetic):
    entry, spec = registry.load_model("tiny"), f"ravdess={synthetic['ravdess']}"
    a = probe_sets.from_corpus(spec, entry, probe=5, calibration=4, seed=3)
    again = probe_sets.from_corpus(spec, entry, probe=5, calibration=4, seed=3)
    none = probe_sets.from_corpus(spec, entry, probe=5, calibration=0, seed=3)
    assert a.probe_ids == again.probe_ids == none.probe_ids and a.calibration_ids == again.calibration_ids
    assert none.calibration == [] and "none asked" in none.description
    frame = corpora.prepare("ravdess", synthetic["ravdess"], progress=False).frame
    everything = probe_sets.from_corpus(spec, entry, probe=10_000, calibration=10_000, seed=3)
    assert len(everything.probe_ids) + len(everything.calibration_ids) == len(frame)   # sizes are bounds


def test_a_corrupt_file_is_skipped_and_counted(synthetic, tmp_path, capsys):
    root = tmp_path / "RAVDESS"
    shutil.copytree(synthetic["ravdess"], root)
    bad = root / "Actor_01" / "03-01-01-01-01-02-01.wav"
    assert not bad.exists()
    bad.write_bytes(b"RIFF....WAVEfmt but not audio")
    argv = ["bench", "--model", "tiny", "--recipe", "fp32", "--weights", "random:0", "--repeats", "1", "--warmup", "0",
            "--probe", "1000", "--no-energy", "--no-rss", "--threads", "1", "--probe-data", f"ravdess={root}"]
    assert main(argv + ["--json"]) == 0
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    assert res["probe"]["skipped"] == 1 and res["probe"]["skipped_files"][0]["path"] == str(bad)
    assert "ravdess: 1 file(s) skipped" in captured.err
    assert "ravdess/03-01-01-01-01-02-01" not in res["probe_ids"]
    assert res["rows"][0]["fidelity"]["probe_clips"] == len(res["probe_ids"]) > 1
    assert main(argv) == 0
    out = capsys.readouterr()
    assert f"probe: ravdess at {root}" in out.out and "1 file(s) skipped" in out.out + out.err


@pytest.mark.parametrize("spec, words", [
    ("ravdess=/nonexistent/RAVDESS", ["/nonexistent/RAVDESS", "no such folder"]),
    ("ravdes=/data/RAVDESS", ["unknown corpus 'ravdes'", "ravdess"]),
    ("ravdess", ["NAME=PATH", "'ravdess'"]),
])
def test_bad_probe_data_is_refused_by_name_before_anything_is_built(spec, words, tmp_path, monkeypatch):
    monkeypatch.setenv("SERBENCH_HOME", str(tmp_path / "home"))
    with pytest.raises(SerbenchError) as err:
        bench("tiny", ["static-int8"], "random:0", probe_data=spec, **QUICK)
    assert all(w in str(err.value) for w in words), str(err.value)
    assert not (tmp_path / "home" / "artefacts").exists()


def test_one_speaker_cannot_be_split(synthetic, tmp_path):
    root = tmp_path / "RAVDESS"
    shutil.copytree(synthetic["ravdess"] / "Actor_01", root / "Actor_01")
    with pytest.raises(SerbenchError, match="1 speaker.*at least 2 speakers"):
        probe_sets.from_corpus(f"ravdess={root}", registry.load_model("tiny"), probe=4, calibration=4)


def test_the_dataframe_says_what_fidelity_was_measured_on(synthetic, tmp_path):
    df = serbench.bench("tiny", ["fp32"], "random:0", home=tmp_path / "h", probe=3,
                        probe_data=f"ravdess={synthetic['ravdess']}", **QUICK)
    assert list(df["probe"].str.startswith(f"probe: ravdess at {synthetic['ravdess']}, 3 clips")) == [True]
    assert df.attrs["result"]["probe"]["probe_clips"] == 3
