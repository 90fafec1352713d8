"""serbench tune --metric ua on the tiny HuBERT (random:0), synthetic IEMOCAP, LOSO: candidates
scored on validation utterances only, with run's heads and run's per-fold calibration; a greedy
choice that reaches the ΔUA target; a recipe that `serbench run` then finds built; refusals."""
from __future__ import annotations

import pytest

import serbench
from serbench import cli, metrics, mixed_precision, registry, train
from serbench.errors import SerbenchError
from serbench.runner import Runner, RunSpec

pytestmark = pytest.mark.slow   # ~45 s: its fixture builds every candidate of two greedy searches

SMALL = {"metric": "ua", "protocol": "loso", "data": None, "synthetic": True, "synthetic_size": "tiny",
         "calibration": 8, "repeats": 2}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A target the base meets (which gives the base's validation ΔUA), then one halfway from it to
    no loss at all; every embed call recorded with the fold it was made for."""
    home = tmp_path_factory.mktemp("tune-ua") / "home"
    calls = []
    real = Runner._embed

    def spy(self, keys, encoder, encoder_key, desc):
        calls.append((desc, list(keys), self))
        return real(self, keys, encoder, encoder_key, desc)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERBENCH_HOME", str(home))
        mp.setattr(Runner, "_embed", spy)
        easy = mixed_precision.tune("tiny", "static-int8", None, "random:0", max_ua_drop=99.0, name="easy-ua", **SMALL)
        drop = max(0.0, round(-100 * easy["base"]["ua_delta"] / 2, 3))
        hard = mixed_precision.tune("tiny", "static-int8", None, "random:0", max_ua_drop=drop, name="hard-ua",
                                    **SMALL)
    return {"home": home, "easy": easy, "hard": hard, "drop": drop, "calls": calls}


@pytest.fixture()
def home(tuned, monkeypatch):
    monkeypatch.setenv("SERBENCH_HOME", str(tuned["home"]))
    return tuned["home"]


def test_static_int8_loses_validation_ua_on_the_tiny_model(tuned):
    """The fixture's premise: without it the "hard" target is met by the base and tests nothing."""
    assert tuned["easy"]["base"]["ua_delta"] < 0 and tuned["drop"] > 0


def test_no_test_utterance_is_embedded_for_its_own_fold(tuned):
    """Every embedding made for fold i (its head, its candidates) is of fold i's training or
    validation utterances; each candidate is scored on validation only."""
    seen_val = False
    for desc, keys, runner in tuned["calls"]:
        index = int(desc.split()[1])
        fold = runner.folds[index]
        assert not set(keys) & set(fold.test), desc
        if desc.endswith(" val") and "embed" not in desc:   # a candidate's scoring
            assert keys == list(fold.val)
            seen_val = True
    assert seen_val


def test_scores_are_pooled_validation_ua_paired_with_the_reference(tuned, home):
    r = tuned["hard"]
    on = r["measured_on"]
    assert on["kind"] == "validation" and on["protocol"] == "loso" and "no test utterance" in on["description"]
    spec = RunSpec(model="tiny", protocol="loso", weights="random:0", synthetic=True, synthetic_size="tiny")
    runner = Runner(spec, progress=False, log=lambda *_: None)
    runner._prepare()
    assert on["utterances"] == sum(len(f.val) for f in runner.folds) and on["folds"] == len(runner.folds)
    for m in [r["base"], r["final"], *r["groups"], *r["steps"]]:
        assert m["ua_delta"] == pytest.approx(m["ua"] - on["reference_ua"], abs=1e-9)
        assert m["delta_ua"]["low"] <= m["ua_delta"] <= m["delta_ua"]["high"]
        assert 0 <= m["agreement"] <= 1 and 0 <= m["mcnemar_p"] <= 1
    # the reference's score, re-derived: each fold's run head on its fp32 validation embeddings, pooled
    y, pred = [], []
    for fold in runner.folds:
        head, _, _ = runner.fit_probe(fold)
        key, enc, _ = runner._encoder(runner.fp32, fold, (runner.model, runner.weights))
        got = train.predict(head, runner._embed(fold.val, enc, key, ""))[0]
        y += runner._labels(fold.val)
        pred += [runner.classes[i] for i in got]
    assert on["reference_ua"] == pytest.approx(metrics.ua(y, pred, runner.classes), abs=1e-12)


def test_greedy_keeps_the_most_ua_sensitive_groups_until_the_target(tuned):
    r, threshold = tuned["hard"], -tuned["drop"] / 100
    assert r["base"]["ua_delta"] < threshold <= r["final"]["ua_delta"] + 1e-12
    ranked = [g["group"] for g in sorted(r["groups"], key=lambda g: -g["fidelity"])]   # by validation cosine
    assert r["chosen"] == ranked[:len(r["chosen"])] and r["chosen"]
    met = [s["ua_delta"] >= threshold - 1e-12 for s in r["steps"]]
    assert met == [False] * (len(met) - 1) + [True]
    assert r["final"]["ua_delta"] == r["steps"][-1]["ua_delta"] == r["verified"]["ua_delta"]


def test_the_written_recipe_says_how_it_was_chosen(tuned, home):
    r = tuned["hard"]
    entry = registry.load_recipe("hard-ua")
    assert entry.options["nodes_to_exclude"] == \
        registry.load_recipe("static-int8").options.get("nodes_to_exclude", []) + r["float_nodes"]
    assert f"val UA {100 * r['final']['ua']:.1f}" in entry.description and "RANDOM-INIT" in entry.description
    text = entry.path.read_text()
    assert f"--metric ua --protocol loso --max-ua-drop {tuned['drop']:g}" in text
    assert "validation utterances only" in text and all(g["group"] in text for g in r["groups"])


def test_run_with_the_tuned_recipe_finds_every_fold_artefact_built(tuned, home, tmp_path):
    """Tune built each fold's candidate as run builds it (calibrated on that fold's training
    utterances, seeded alike): run builds nothing new, and on the test splits it scores its own."""
    before = sorted(p.name for p in (home / "artefacts").iterdir())
    df = serbench.run("tiny", "loso", ["fp32", "hard-ua"], weights="random:0", synthetic=True,
                      synthetic_size="tiny", calibration_clips=8, measure=False, store=tmp_path / "r.sqlite")
    assert sorted(p.name for p in (home / "artefacts").iterdir()) == before
    assert set(df["recipe"]) == {"fp32", "hard-ua"}


def test_the_command_line_prints_validation_scores(tuned, home, capsys):
    assert cli.main(["tune", "--model", "tiny", "--recipe", "static-int8", "--weights", "random:0",
                     "--metric", "ua", "--protocol", "loso", "--synthetic", "--synthetic-size", "tiny",
                     "--max-ua-drop", str(tuned["drop"]), "--calibration", "8", "--repeats", "2",
                     "--name", "cli-ua"]) == 0
    out = capsys.readouterr().out
    assert "val ΔUA [95% CI]" in out and "no test utterance read" in out and "RANDOM-INIT" in out
    d = tuned["hard"]["base"]["delta_ua"]
    assert ("cannot tell the base from the reference" in out) == (d["low"] <= 0 <= d["high"])
    assert f"{100 * tuned['hard']['final']['ua']:.1f}" in out
    assert registry.load_recipe("cli-ua").options == registry.load_recipe("hard-ua").options


@pytest.mark.parametrize("kwargs, message", [
    ({"metric": "ua", "max_ua_drop": 1.0}, "--metric ua needs --protocol"),
    ({"metric": "ua", "protocol": "loso"}, "--metric ua needs --protocol .* and --max-ua-drop"),
    ({"metric": "ua", "protocol": "loso", "max_ua_drop": 1.0, "min_fidelity": 0.9}, "--min-fidelity belong"),
    ({"metric": "ua", "protocol": "loso", "max_ua_drop": 1.0, "probe": 4}, "--probe belong"),
    ({"metric": "ua", "protocol": "loso", "max_ua_drop": 1.0, "synthetic": True, "data": {"iemocap": "/x"}},
     "contradict"),
    ({"min_fidelity": 0.9, "protocol": "loso"}, "--protocol belong to --metric ua"),
    ({"min_fidelity": 0.9, "max_ua_drop": 1.0}, "--max-ua-drop belong to --metric ua"),
    ({}, "--metric fidelity needs --min-fidelity"),
])
def test_each_metric_refuses_the_other_metrics_arguments_before_building(kwargs, message, tmp_path):
    with pytest.raises(SerbenchError, match=message):
        serbench.tune("tiny", "static-int8", weights="random:0", home=tmp_path, **kwargs)
    assert not (tmp_path / "artefacts").exists()


@pytest.mark.parametrize("bad", [-1.0, 100.0])
def test_a_drop_outside_its_range_is_refused_by_the_options_table(bad, tmp_path):
    with pytest.raises(SerbenchError, match=r"max_ua_drop.*--max-ua-drop.*\[0, 100\)"):
        serbench.tune("tiny", "static-int8", weights="random:0", metric="ua", protocol="loso", max_ua_drop=bad,
                      synthetic=True, home=tmp_path)


def test_a_target_met_only_with_every_group_float_writes_nothing(tuned, home, monkeypatch):
    """That recipe is the reference graph with quantise/dequantise pairs: slower, nothing gained.
    Made by scoring every candidate short of the target except the one with every group float."""
    from serbench.validation_trials import ValidationTrials

    base = registry.load_recipe("static-int8").options.get("nodes_to_exclude", [])
    every = len(base) + sum(len(g["nodes"]) for g in tuned["hard"]["groups"])
    real = ValidationTrials.__call__

    def only_every(self, recipe):
        m = real(self, recipe)
        return {**m, "ua_delta": 0.0 if len(recipe.options.get("nodes_to_exclude", [])) >= every else -0.5}

    monkeypatch.setattr(ValidationTrials, "__call__", only_every)
    with pytest.raises(SerbenchError, match=r"met only with all \d+ node groups .* nothing written\. The base's "
                                            r"validation ΔUA is"):
        mixed_precision.tune("tiny", "static-int8", None, "random:0", max_ua_drop=0.1, name="never-ua", **SMALL)
    assert not (home / "registry" / "recipes" / "never-ua.yaml").exists()
