"""Bad options and data files (issue 23): each is a named error, from the command line, YAML and the
Python API alike, before any work is done; option ranges are declared once (serbench.options)."""
from __future__ import annotations

import pytest
import yaml
from _models import write_entry

import serbench
from serbench import heads, options, paths, protocols, registry, schema, sources, store, train
from serbench.cli import main
from serbench.errors import SerbenchError
from serbench.finetune import FinetuneConfig, finetune

RUN = ["run", "--model", "egemaps", "--protocol", "loso", "--no-measure"]


def _cli_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


# -- 1. option ranges: the command line and the API, one message -----------------------------------

CLI_AND_API = [  # (extra CLI arguments, the same as API keywords, what the message must say)
    (["--epochs", "0"], {"epochs": 0}, "option 'epochs' (--epochs): must be positive, got 0"),
    (["--epochs", "-1"], {"epochs": -1}, "option 'epochs' (--epochs): must be positive, got -1"),
    (["--seed", "-1"], {"seed": -1}, "option 'seed' (--seed): must be in [0, 4294967295]"),
    (["--seed", str(2**32)], {"seed": 2**32}, "option 'seed' (--seed): must be in [0, 4294967295]"),
    (["--synthetic", "--data", "iemocap=/data/iemocap"], {"synthetic": True, "data": {"iemocap": "/data/iemocap"}},
     "--synthetic and --data iemocap=... contradict each other"),
]


@pytest.mark.parametrize("argv,kwargs,says", CLI_AND_API, ids=[" ".join(c[0]) for c in CLI_AND_API])
def test_run_option_out_of_range_is_the_same_named_error_from_cli_and_api(tmp_path, capsys, argv, kwargs, says):
    db = tmp_path / "r.sqlite"
    err = _cli_error(RUN + argv + ["--store", str(db)], capsys)
    assert says in err
    with pytest.raises(SerbenchError) as api:
        serbench.run("egemaps", "loso", measure=False, store=db, **kwargs)
    assert err.strip() == f"serbench run: error: {api.value}"      # word for word
    assert not db.exists()                                          # refused before anything was opened


def test_epochs_zero_is_refused_not_replaced_by_the_default():
    """The falsy-zero class: 0 was `or`-ed into 25; now every config refuses it where it is made."""
    for bad in (0, -1):
        with pytest.raises(SerbenchError, match="FinetuneConfig: field 'epochs': must be positive"):
            FinetuneConfig(epochs=bad)
        with pytest.raises(SerbenchError, match="ProbeConfig: field 'max_epochs': must be positive"):
            train.ProbeConfig(max_epochs=bad)
    with pytest.raises(SerbenchError, match="ProbeConfig: field 'threads': must be positive"):
        train.ProbeConfig(threads=0)           # `if c.threads:` would have read 0 as "leave as is"
    assert FinetuneConfig(epochs=1).epochs == 1 and train.ProbeConfig().max_epochs == 100


def test_duplicate_recipe_is_refused_before_any_run_row(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    err = _cli_error(["run", "--model", "tiny", "--weights", "random:0", "--protocol", "loso", "--synthetic",
                      "--synthetic-size", "tiny", "--recipe", "fp32,fp32", "--store", str(db)], capsys)
    assert "option 'recipes' (--recipe): lists 'fp32' twice" in err
    assert not db.exists() or store.Store(db).runs().empty
    from serbench.runner import Runner, RunSpec   # a sweep's cells reach the runner without the front door

    with pytest.raises(SerbenchError, match="fp32 given twice"):
        Runner(RunSpec(model="tiny", protocol="loso", recipes=("fp32", "dynamic-int8", "fp32"), weights="random:0"))


def test_bench_and_infer_options_are_checked_with_their_ranges(tmp_path, capsys):
    err = _cli_error(["bench", "--model", "tiny", "--recipe", "fp32", "--weights", "random:0", "--seed", "-1"], capsys)
    assert "option 'seed' (--seed): must be in [0, 4294967295]" in err
    err = _cli_error(["bench", "--model", "tiny", "--recipe", "fp32", "--repeats", "0"], capsys)
    assert "option 'repeats' (--repeats): must be positive, got 0" in err
    err = _cli_error(["infer", str(tmp_path), "note.wav", "--hop", "inf"], capsys)
    assert "option 'hop' (--hop): must be a finite number, got inf" in err
    with pytest.raises(SerbenchError) as api:
        serbench.analyse(tmp_path, ["note.wav"], hop=float("inf"))
    assert err.strip() == f"serbench infer: error: {api.value}"
    err = _cli_error(["synth", str(tmp_path / "s"), "--seed", "-1"], capsys)
    assert "option 'seed' (--seed)" in err and not (tmp_path / "s").exists()


def test_the_standalone_runtime_refuses_a_non_finite_window_too():
    from serbench.runtime import InferError, Options

    for bad in ({"hop": float("inf")}, {"window": float("nan")}, {"min_speech": float("inf")}):
        with pytest.raises(InferError, match="positive and finite"):
            Options(**bad).check(None)


# -- 4. the API's front door: types checked, the CLI's messages, no deep TypeError -----------------

API_TYPES = [
    (lambda: serbench.run("egemaps", "loso", synthetic="no"), "option 'synthetic' (--synthetic): must be true or false, got 'no'"),
    (lambda: serbench.run("egemaps", "loso", recipes=5), "option 'recipes' (--recipe): must be a list or a tuple, got 5"),
    (lambda: serbench.run(3, "loso"), "option 'model' (--model): must be a string, got 3"),
    (lambda: serbench.run("egemaps", "loso", synthtic=True), "option 'synthtic': unknown option"),
    (lambda: serbench.run("egemaps", "loso", label_maps=["x"]), "option 'label_maps' (--label-map): must be a mapping"),
    (lambda: serbench.run("egemaps", "loso", data={"iemocap": 3}), "must map corpus names to folder paths"),
    (lambda: serbench.run("egemaps", "loso", finetune={"epochs": 2}), "must be a serbench.finetune.FinetuneConfig"),
    (lambda: serbench.run("egemaps", "loso", log="print"), "option 'log': must be a function"),
    (lambda: serbench.bench("tiny", ["fp32"], repeats=2.0), "option 'repeats' (--repeats): must be an integer, got 2.0"),
    (lambda: serbench.bench("tiny", ["fp32"], energy="yes"), "option 'energy' (--no-energy): must be true or false"),
    (lambda: serbench.bench("tiny", ["fp32"], min_fidelity=float("nan")), "must be a finite number, got nan"),
    (lambda: serbench.tune("tiny", "static-int8", 1.5), "option 'min_fidelity' (--min-fidelity): must be in (0, 1]"),
    (lambda: serbench.analyse("m", 3), "option 'files': must be a list or a tuple, got 3"),
    (lambda: serbench.analyse("m", ["a.wav"], window="8"), "option 'window' (--window): must be a number, got '8'"),
    (lambda: serbench.sweep("g.yaml", cpus_per_task=0), "option 'cpus_per_task' (--cpus-per-task): must be positive"),
]


@pytest.mark.parametrize("call,says", API_TYPES, ids=[s for _, s in API_TYPES])
def test_api_arguments_are_type_checked_at_the_front_door(call, says):
    with pytest.raises(SerbenchError) as err:
        call()
    assert says in str(err.value)


def test_every_option_table_names_distinct_fields():
    for table in (options.RUN, options.BENCH, options.TUNE, options.SWEEP, options.ANALYSE):
        names = [f.name for f in table]
        assert len(names) == len(set(names)), names
    # --epochs is the fine-tuning configuration's field, declared once
    assert next(f for f in options.RUN if f.name == "epochs") in options.FINETUNE


# -- 1. ranges in data files: heads, recipes, serbench.toml ----------------------------------------


def _head(tmp_path, monkeypatch, kind: str, opts: dict) -> str:
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    path = write_entry(tmp_path, "heads", "bad", {"name": "bad", "kind": kind, "options": opts})
    with pytest.raises(SerbenchError) as err:
        heads.load("bad")
    assert str(path) in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("kind,opts,field,says", [
    ("mlp", {"max_epochs": 0}, "options.max_epochs", "must be positive, got 0"),
    ("mlp", {"dropout": 1.5}, "options.dropout", "must be in [0, 1)"),
    ("mlp", {"hidden": True}, "options.hidden", "must be an integer"),
    ("logreg", {"C": -1.0}, "options.C", "must be a positive number or a non-empty list of them"),
    ("logreg", {"C": [0.1, -1]}, "options.C", "must be a positive number"),
    ("logreg", {"C": []}, "options.C", "non-empty list"),
    ("svm-linear", {"max_iter": 0}, "options.max_iter", "must be positive"),
    ("svm-linear", {"layers": "first"}, "options.layers", "must be one of mean, last"),
    ("logreg", {"max_itr": 10}, "options.max_itr", "did you mean 'max_iter'"),
])
def test_head_option_ranges_are_checked_at_load(tmp_path, monkeypatch, kind, opts, field, says):
    msg = _head(tmp_path, monkeypatch, kind, opts)
    assert f"field '{field}'" in msg and says in msg, msg


def test_recipe_opset_out_of_range_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    base = yaml.safe_load(registry.recipe_files()["fp32"].read_text())
    for opset in (99, 13):
        path = write_entry(tmp_path, "recipes", "bad", {**base, "name": "bad", "options": {"opset": opset}})
        with pytest.raises(SerbenchError) as err:
            registry.load_recipe("bad")
        assert f"{path}: field 'options.opset': must be in [14, 23], got {opset}" == str(err.value)


def test_non_finite_numbers_in_a_data_file_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    write_entry(tmp_path, "heads", "inf", "name: inf\nkind: mlp\noptions: {lr: .inf}\n")
    with pytest.raises(SerbenchError, match=r"field 'options.lr': must be a finite number, got inf"):
        heads.load("inf")


def test_non_string_path_in_serbench_toml_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "serbench.toml"
    for value in ("3", "true", "[\"/a\"]", "\"\""):
        cfg.write_text(f"[data]\nravdess = {value}\n")
        with pytest.raises(SerbenchError) as err:
            sources.resolve(("ravdess",))
        assert str(cfg) in str(err.value) and "field 'data.ravdess'" in str(err.value)
    cfg.write_text("[data]\nravdess = \"corpora/ravdess\"\n")
    assert sources.resolve(("ravdess",))["ravdess"].path == tmp_path / "corpora" / "ravdess"


# -- 2. YAML: aliases, duplicate keys, x.yaml beside x.yml -----------------------------------------

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))


def test_yaml_alias_bomb_is_refused_before_expansion(tmp_path, monkeypatch):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    with pytest.raises(SerbenchError, match=r"line 2: YAML aliases \(\*name\) are not allowed"):
        schema.read(path)
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    write_entry(tmp_path, "heads", "bomb", "name: bomb\nkind: mlp\n" + BOMB.replace("a:", "x:", 1))
    with pytest.raises(SerbenchError, match="aliases"):
        heads.load("bomb")
    one = tmp_path / "one.yaml"       # a single anchor and alias is refused as well: one rule, no count
    one.write_text("x: &v 1\ny: *v\n")
    with pytest.raises(SerbenchError, match=f"{one}: line 2: YAML aliases"):
        schema.read(one)


def test_duplicate_yaml_keys_are_refused_naming_file_key_and_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    path = write_entry(tmp_path, "heads", "dup", "name: dup\nkind: mlp\nkind: logreg\n")
    with pytest.raises(SerbenchError) as err:
        heads.load("dup")
    assert str(err.value) == (f"{path}: line 3: key 'kind' given twice (first on line 2); "
                              "the later value would silently win")
    nested = write_entry(tmp_path, "heads", "nested", "name: nested\nkind: mlp\noptions:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(SerbenchError, match=f"{nested}: line 5: key 'lr' given twice"):
        heads.load("nested")
    flow = write_entry(tmp_path, "heads", "flow", "name: flow\nkind: mlp\noptions: {lr: 0.1, lr: 0.2}\n")
    with pytest.raises(SerbenchError, match=f"{flow}: line 3: key 'lr' given twice \\(first on line 3\\)"):
        heads.load("flow")
    proto = tmp_path / "p.yaml"       # protocols are read by the same loader
    proto.write_text("name: p\nseed: 1\nseed: 2\n")
    with pytest.raises(SerbenchError, match=f"{proto}: line 3: key 'seed' given twice"):
        protocols.load(proto)


def test_protocol_seed_out_of_range_is_named(tmp_path):
    text = (protocols.available()["loso"].read_text()).replace("seed: 0", "seed: -1")
    path = tmp_path / "loso.yaml"
    path.write_text(text)
    with pytest.raises(SerbenchError, match=r"field 'seed': must be in \[0, 4294967295\]"):
        protocols.load(path)


def test_yaml_beside_yml_is_an_error_naming_both(tmp_path, monkeypatch):
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    a = write_entry(tmp_path, "heads", "dup", {"name": "dup", "kind": "mlp"})
    b = a.with_suffix(".yml")
    b.write_text("name: dup\nkind: logreg\n")
    with pytest.raises(SerbenchError) as err:
        heads.load("dup")
    assert str(a) in str(err.value) and str(b) in str(err.value)
    b.unlink()
    assert heads.load("dup").kind == "mlp"
    other = tmp_path / "other"             # a later folder overriding an earlier one is still how users override
    (other / "heads").mkdir(parents=True)
    (other / "heads" / "dup.yml").write_text("name: dup\nkind: logreg\n")
    assert paths.yaml_files([tmp_path / "heads", other / "heads"])["dup"] == other / "heads" / "dup.yml"


# -- 5. one-class problems: refused before training, naming the labels per split -------------------


def _xy(labels):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.normal(size=(len(labels), 1, 4)).astype("float32"), list(labels)


@pytest.mark.parametrize("head", ["logreg", "mlp", "svm-linear"])
def test_one_class_problem_is_refused_before_training(head):
    Xt, yt = _xy(["neutral"] * 6)
    Xv, yv = _xy(["neutral"] * 3)
    with pytest.raises(SerbenchError) as err:
        heads.fit(heads.load(head), Xt, yt, Xv, yv, ["neutral"])
    msg = str(err.value)
    assert "one-class problem" in msg and "training: neutral x6" in msg and "validation: neutral x3" in msg


@pytest.mark.parametrize("head", ["logreg", "mlp"])
def test_a_class_missing_from_training_is_named_with_the_labels_found(head):
    Xt, yt = _xy(["angry"] * 4)
    Xv, yv = _xy(["angry", "sad"])
    with pytest.raises(SerbenchError) as err:
        heads.fit(heads.load(head), Xt, yt, Xv, yv, ["angry", "sad"])
    msg = str(err.value)
    assert "no example of class(es) ['sad']" in msg and "training: angry x4; validation: angry x1, sad x1" in msg


def test_finetune_refuses_a_one_class_problem_before_touching_the_backbone():
    with pytest.raises(SerbenchError, match="one-class problem"):
        finetune(None, [], ["a", "a"], [], ["a"], ["a"], entry=registry.load_model("tiny"))


def test_run_on_a_one_class_label_map_is_refused_before_any_embedding(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    write_entry(tmp_path, "labelmaps", "one", {"name": "one", "classes": ["emotional"],
                                                "map": {c: "emotional" for c in ("03", "04", "05")}})
    db = tmp_path / "r.sqlite"
    err = _cli_error(["run", "--model", "egemaps", "--protocol", "leave-one-speaker-out", "--corpus", "ravdess",
                      "--label-map", "ravdess=one", "--synthetic", "--synthetic-size", "tiny", "--no-measure",
                      "--store", str(db)], capsys)
    assert "fold 0: a one-class problem (classes: ['emotional'])" in err and "training: emotional x" in err
    assert not (paths.home() / "cache" / "embeddings").exists()
    assert not db.exists() or store.Store(db).runs().empty


@pytest.mark.parametrize("seed", ["-1", str(2 ** 32)])
def test_a_random_weights_seed_out_of_range_is_named(seed):
    """--weights random:SEED takes the range of every other seed (torch accepted -1 and 2**32)."""
    from serbench import backbones

    with pytest.raises(SerbenchError, match=r"random:.*must be in \[0, 4294967295\]"):
        backbones.parse_weights(f"random:{seed}")
    assert backbones.parse_weights(f"random:{2 ** 32 - 1}")["seed"] == 2 ** 32 - 1


def test_the_declared_synthetic_sizes_are_the_synthetic_corpora_sizes():
    """options.py copies synth's sizes (importing synth there would load soundfile and soxr)."""
    from serbench import options
    from serbench.synth import corpora

    assert options.SYNTHETIC_SIZES == tuple(corpora.SIZES)
