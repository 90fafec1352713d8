"""serbench tune on the tiny HuBERT (random:0): node groups derived from the quantised graph, one
sensitivity per group, a greedy choice that reaches the target, a recipe file that the registry
loads and bench measures at the target, and refusals that write nothing."""
from __future__ import annotations

import pytest
import yaml
from _models import write_entry

from serbench import backbones, cli, measure, mixed_precision, paths, registry
from serbench.artefacts import cache
from serbench.errors import SerbenchError
from serbench.recipe_bench import bench

SMALL = {"probe": 4, "calibration": 4, "repeats": 2}   # bench's meaning; tests pass the same to bench


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One SERBENCH_HOME for the module (candidates are cached artefacts): first a target the base
    recipe meets, which gives the base fidelity, then a target halfway from it to 1."""
    home = tmp_path_factory.mktemp("tune") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERBENCH_HOME", str(home))
        easy = mixed_precision.tune("tiny", "static-int8", 0.001, "random:0", name="easy", **SMALL)
        target = round((easy["base"]["fidelity"] + 1) / 2, 4)
        hard = mixed_precision.tune("tiny", "static-int8", target, "random:0", name="hard", **SMALL)
    return {"home": home, "easy": easy, "hard": hard, "target": target}


@pytest.fixture()
def home(tuned, monkeypatch):
    monkeypatch.setenv("SERBENCH_HOME", str(tuned["home"]))
    return tuned["home"]


def test_one_sensitivity_per_node_group_derived_from_the_graph(tuned):
    r, config = tuned["hard"], registry.load_model("tiny").config
    # static-int8 keeps the first conv float; every other conv, the feature projection, the
    # positional conv and each layer's attention and feed-forward are one group each
    expected = len(config["conv_dim"]) - 1 + 2 + 2 * config["num_hidden_layers"]
    assert len(r["groups"]) == expected
    names = [n for g in r["groups"] for n in g["nodes"]]
    assert len(names) == len(set(names))                      # a node is in one group only
    assert sum("attention" in g["group"] for g in r["groups"]) == config["num_hidden_layers"]
    assert all(len(g["nodes"]) == 4 for g in r["groups"] if g["group"].endswith("attention"))  # q, k, v, out
    for g in r["groups"]:
        assert -1 <= g["fidelity"] <= 1 and g["gain"] == pytest.approx(g["fidelity"] - r["base"]["fidelity"], abs=2e-5)


def test_greedy_keeps_the_most_sensitive_groups_until_the_target(tuned):
    r, target = tuned["hard"], tuned["target"]
    assert r["base"]["fidelity"] < target <= r["final"]["fidelity"]
    ranked = [g["group"] for g in sorted(r["groups"], key=lambda g: -g["fidelity"])]
    assert r["chosen"] == ranked[:len(r["chosen"])] and r["chosen"]
    assert [s["fidelity"] >= target for s in r["steps"]] == [False] * (len(r["steps"]) - 1) + [True]
    assert r["final"]["fidelity"] == r["steps"][-1]["fidelity"] == r["verified_fidelity"]
    chosen_nodes = {n for g in r["groups"] if g["group"] in r["chosen"] for n in g["nodes"]}
    assert set(r["float_nodes"]) == chosen_nodes


def test_written_recipe_loads_through_the_registry_and_builds(tuned, home):
    r = tuned["hard"]
    assert r["path"] == str(paths.home() / "registry" / "recipes" / "hard.yaml")
    entry, base = registry.load_recipe("hard"), registry.load_recipe("static-int8")
    assert (entry.backend, entry.method, entry.calibration) == (base.backend, base.method, base.calibration)
    assert entry.options["nodes_to_exclude"] == base.options.get("nodes_to_exclude", []) + r["float_nodes"]
    assert {k: v for k, v in entry.options.items() if k != "nodes_to_exclude"} == \
        {k: v for k, v in base.options.items() if k != "nodes_to_exclude"}
    assert f"{r['final']['fidelity']:.4f}" in entry.description and "RANDOM-INIT" in entry.description
    text = entry.path.read_text()
    assert all(g["group"] in text for g in r["groups"])   # the sensitivities are in its comments
    model = registry.load_model("tiny")
    waves, ids = measure.clips(2, measure.CALIBRATION_SEED, seconds=1.0)
    art = cache.build(model, entry, backbones.build(model, "random:0"), waves, ids, force=True)
    assert (art.path / art.file).is_file() and art.recipe == "hard"


@pytest.mark.parametrize("change, attention_nodes", [({"quant_format": "QOperator"}, 4),
                                                     ({"weight_matmuls_only": False}, 6)])
def test_groups_come_from_node_names_whatever_the_format(tuned, home, tmp_path, monkeypatch, change,
                                                         attention_nodes):
    """QOperator graphs name their integer nodes NAME_quant; quantised attention-score MatMuls
    (no weights: two per layer) belong to their attention module's group."""
    base = registry.load_recipe("static-int8")
    write_entry(tmp_path, "recipes", "variant",
                {**base.content, "name": "variant", "options": {**base.content["options"], **change}})
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    recipe, model = registry.load_recipe("variant"), registry.load_model("tiny")
    waves, ids = measure.clips(2, measure.CALIBRATION_SEED, seconds=1.0)
    art = cache.build(model, recipe, backbones.build(model, "random:0"), waves, ids)
    groups = mixed_precision.node_groups(art.path / art.file, recipe.options.get("op_types_to_quantize"))
    assert set(groups) == {g["group"] for g in tuned["hard"]["groups"]}
    assert {len(v) for g, v in groups.items() if g.endswith("attention")} == {attention_nodes}


def test_bench_measures_the_written_recipe_at_the_target(tuned, home):
    out = bench("tiny", ["hard"], "random:0", probe=SMALL["probe"], calibration=SMALL["calibration"], repeats=2,
                warmup=1, energy=False, rss=False)
    row = next(x for x in out["rows"] if x["recipe"] == "hard")
    assert out["probe_ids"] == tuned["hard"]["probe_ids"]
    assert row["fidelity"]["centered_cosine"] >= tuned["target"]
    assert row["fidelity"]["centered_cosine"] == pytest.approx(tuned["hard"]["final"]["fidelity"], abs=1e-4)


def test_a_target_the_base_meets_keeps_nothing_float(tuned, home):
    r = tuned["easy"]
    assert r["chosen"] == [] and r["groups"] == [] and r["float_nodes"] == []
    assert r["final"]["fidelity"] == r["base"]["fidelity"]
    entry = registry.load_recipe("easy")
    assert entry.options == registry.load_recipe("static-int8").options


@pytest.mark.parametrize("target", [1.01, 0.0, -0.5])
def test_a_target_outside_0_1_is_refused_before_anything_is_built(target):
    with pytest.raises(SerbenchError, match="at most 1"):
        mixed_precision.tune("tiny", "static-int8", target, "random:0", **SMALL)
    assert not (paths.home() / "artefacts").exists() and not (paths.home() / "registry").exists()


def test_a_target_not_met_with_every_group_float_writes_nothing(tuned, home, monkeypatch):
    """Every group float is nearly the fp32 graph on tiny, so a fidelity it cannot reach is made by
    scaling every measured cosine: the refusal must then name it and write nothing."""
    real = mixed_precision.Trials.__call__

    def halved(self, recipe):
        return {**real(self, recipe), "fidelity": round(real(self, recipe)["fidelity"] / 2, 5)}

    monkeypatch.setattr(mixed_precision.Trials, "__call__", halved)
    with pytest.raises(SerbenchError, match=r"cannot be met: with all \d+ node groups .* nothing written"):
        mixed_precision.tune("tiny", "static-int8", 0.9, "random:0", name="never", **SMALL)
    assert not (home / "registry" / "recipes" / "never.yaml").exists()


@pytest.mark.parametrize("recipe", ["fp32", "fp16", "dynamic-int8"])
def test_a_recipe_without_float_exclusions_is_refused(recipe):
    with pytest.raises(SerbenchError, match=f"{recipe}.*no 'nodes_to_exclude' option"):
        mixed_precision.tune("tiny", recipe, 0.99, "random:0", **SMALL)
    assert not (paths.home() / "artefacts").exists()


def test_an_existing_recipe_is_not_replaced_without_force(tuned, home):
    before = (home / "registry" / "recipes" / "easy.yaml").read_text()
    with pytest.raises(SerbenchError, match="exists; not overwriting"):
        mixed_precision.tune("tiny", "static-int8", 0.001, "random:0", name="easy", **SMALL)
    with pytest.raises(SerbenchError, match="recipe named 'static-int8' already exists"):
        mixed_precision.tune("tiny", "static-int8", 0.001, "random:0", name="static-int8", **SMALL)
    assert (home / "registry" / "recipes" / "easy.yaml").read_text() == before
    again = mixed_precision.tune("tiny", "static-int8", 0.001, "random:0", name="easy", force=True, **SMALL)
    assert registry.load_recipe("easy").name == "easy" and again["chosen"] == []


def test_cli_writes_to_out_and_prints_the_result(tuned, home, tmp_path, capsys):
    out = tmp_path / "mine.yaml"
    rc = cli.main(["tune", "--model", "tiny", "--weights", "random:0", "--recipe", "static-int8",
                   "--min-fidelity", str(tuned["target"]), "--out", str(out), "--probe", "4", "--calibration", "4",
                   "--repeats", "2"])
    text = capsys.readouterr().out
    assert rc == 0 and out.is_file() and yaml.safe_load(out.read_text())["name"] == "mine"
    assert "RANDOM-INIT" in text and f"--recipe {out}" in text
    assert all(g in text for g in tuned["hard"]["chosen"])
    assert registry.load_recipe(str(out)).options == registry.load_recipe("hard").options
    rc = cli.main(["tune", "--model", "tiny", "--weights", "random:0", "--recipe", "fp32", "--min-fidelity", "0.9"])
    assert rc == 2 and "no 'nodes_to_exclude' option" in capsys.readouterr().err


def test_front_door_tunes_under_the_home_it_is_given(tuned):
    import serbench

    r = serbench.tune("tiny", "static-int8", 0.001, "random:0", home=tuned["home"], name="api", **SMALL)
    assert r["path"] == str(tuned["home"] / "registry" / "recipes" / "api.yaml") and r["chosen"] == []
    assert not (paths.home() / "registry").exists()      # this test's own SERBENCH_HOME is untouched
