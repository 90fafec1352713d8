"""The ``matmul-nbits`` method and its ``int4-matmul`` recipe on the tiny HuBERT: 4-bit (and 8-bit,
where the recipe keeps them) MatMulNBits beside int8 convs, smaller than static-int8, faithful, its
options checked at load, and exported into one verified graph."""
from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from collections import Counter

import numpy as np
import onnx
import pytest
from _models import clips, write_entry

from serbench import backbones, deploy, measure, registry, runtime, store
from serbench.artefacts import cache, encoders, ort_nbits
from serbench.artefacts.onnxruntime import OrtEncoder
from serbench.deploy import graph, select
from serbench.errors import SerbenchError
from serbench.runner import Runner, RunSpec

RECIPE = "int4-matmul"
CAL_IDS = [f"train/utt{i}" for i in range(3)]


def _variant(root, name: str, **options) -> str:
    """A copy of the int4-matmul recipe under another name with some options changed, in ``root``
    (a folder for $SERBENCH_REGISTRY)."""
    base = registry.load_recipe(RECIPE)
    write_entry(root, "recipes", name, {**base.content, "name": name, "options": {**base.options, **options}})
    return name


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """tiny (random:0), and its fp32, static-int8, int4-matmul and 2-bit-variant artefacts."""
    root = tmp_path_factory.mktemp("nbits")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERBENCH_HOME", str(root / "home"))
        mp.setenv("SERBENCH_REGISTRY", str(root / "registry"))
        two = _variant(root / "registry", "two-bit", bits=2, matmuls_8bit=[])
        entry = registry.load_model("tiny")
        model, prov = backbones.build(entry, "random:0")
        cal = clips(3, seconds=1.0, seed=11)
        arts = {r: cache.build(entry, registry.load_recipe(r), (model, prov), cal, CAL_IDS)
                for r in ("fp32", "static-int8", RECIPE, two)}
        probe = clips(4, seconds=1.2, seed=12)
        emb = {r: measure.embed_all(encoders.open_encoder(a, threads=1), probe) for r, a in arts.items()}
        yield {"entry": entry, "model": model, "prov": prov, "cal": cal, "arts": arts, "emb": emb,
               "recipe": registry.load_recipe(RECIPE), "root": root}


def _graph(art):
    return onnx.load(str(art.path / art.file)).graph


def test_weight_matmuls_become_matmulnbits_at_the_recipes_bits_and_block_sizes(setup):
    opts = setup["recipe"].options
    fp32_weight_matmuls = ort_nbits.weight_matmuls(_graph(setup["arts"]["fp32"]))
    # onnxruntime names each MatMulNBits node after the MatMul it replaces, plus "_Q<bits>"
    nodes = {n.name.rsplit("_Q", 1)[0]: n for n in _graph(setup["arts"][RECIPE]).node if n.op_type == "MatMulNBits"}
    assert fp32_weight_matmuls and sorted(nodes) == sorted(fp32_weight_matmuls)
    assert all(n.domain == "com.microsoft" for n in nodes.values())
    for name, node in nodes.items():
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        eight = any(fnmatch.fnmatch(name, p) for p in opts["matmuls_8bit"])
        assert (attrs["bits"], attrs["block_size"]) == ((8, opts["block_size_8bit"]) if eight
                                                        else (opts["bits"], opts["block_size"])), name
        assert attrs["accuracy_level"] == opts["accuracy_level"]
        assert len(node.input) == (3 if opts["symmetric"] else 4)  # zero points only when asymmetric
    bits = Counter(setup["arts"][RECIPE].provenance["matmul_bits"].values())
    assert bits[4] > 0 and bits[8] > 0 and sum(bits.values()) == len(nodes)
    # the attention MatMuls (two activations, no weights) stay float MatMuls
    assert all("attention" in n.name for n in _graph(setup["arts"][RECIPE]).node if n.op_type == "MatMul")


def test_convs_are_int8_as_the_static_recipe_makes_them(setup):
    graph = _graph(setup["arts"][RECIPE])
    producer = {o: n for n in graph.node for o in n.output}
    int8 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    first = setup["recipe"].options["nodes_to_exclude"][0]
    convs = {n.name: producer.get(n.input[1]) for n in graph.node if n.op_type == "Conv"}
    assert len(convs) == 4  # three feature-encoder convs and the positional conv
    for name, weight_from in convs.items():
        if fnmatch.fnmatch(name, first):
            assert weight_from is None  # excluded: its float weight is an initializer
        else:
            assert weight_from.op_type == "DequantizeLinear" and weight_from.input[0] in int8, name


def test_smaller_than_static_int8_and_embeds_like_the_others(setup):
    arts, emb = setup["arts"], setup["emb"]
    assert arts[RECIPE].size_mb < arts["static-int8"].size_mb < arts["fp32"].size_mb
    assert emb[RECIPE].shape == emb["fp32"].shape == (4, 3, 32) and emb[RECIPE].dtype == np.float32
    assert np.isfinite(emb[RECIPE]).all()
    enc = encoders.open_encoder(arts[RECIPE], threads=1)
    assert isinstance(enc, OrtEncoder) and enc.embed(setup["cal"][0]).shape == (3, 32)


def test_fidelity_to_fp32_is_sane_and_falls_with_fewer_bits(setup):
    """Against the fp32 ONNX artefact (the reference bench and run use): at least the floor the
    int8 recipes must clear on this 25k-parameter random net (tests/test_artefacts.py), and better
    than the same recipe at 2 bits with nothing kept at 8 bits, which must measurably lose."""
    emb = setup["emb"]
    four, two = measure.fidelity(emb["fp32"], emb[RECIPE]), measure.fidelity(emb["fp32"], emb["two-bit"])
    assert four["centered_cosine"] >= 0.5 and four["rel_l2"] < 0.5, four
    assert two["centered_cosine"] < four["centered_cosine"] and two["rel_l2"] > four["rel_l2"], (four, two)


@pytest.mark.parametrize("options,field", [
    ({"block_size": 48}, "options.block_size"),          # not a power of two
    ({"block_size": 8}, "options.block_size"),           # below MatMulNBits' 16
    ({"block_size_8bit": 100}, "options.block_size_8bit"),
    ({"bits": 3}, "options.bits"),
    ({"accuracy_level": 5}, "options.accuracy_level"),
    ({"symmetric": "yes"}, "options.symmetric"),
    ({"matmuls_8bit": "*/v_proj/MatMul"}, "options.matmuls_8bit"),
    ({"calibrate_percentile": 120}, "options.calibrate_percentile"),
    ({"weight_type": "QUint8"}, "options.weight_type"),
    ({"op_types_to_quantize": ["Conv", "MatMul"]}, "options.op_types_to_quantize"),  # the method fixes it
])
def test_bad_option_values_are_refused_at_load_naming_file_and_field(tmp_path, monkeypatch, options, field):
    name = _variant(tmp_path, "bad-nbits", **options)
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    with pytest.raises(SerbenchError) as err:
        registry.load_recipe(name)
    assert str(tmp_path / "recipes" / "bad-nbits.yaml") in str(err.value) and repr(field) in str(err.value)


def test_an_8bit_pattern_that_matches_nothing_is_an_error(setup, tmp_path, monkeypatch):
    name = _variant(tmp_path, "nbits-typo", matmuls_8bit=["*/no_such/MatMul"])
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    with pytest.raises(SerbenchError, match=r"nbits-typo.*\*/no_such/MatMul.*matches no weight MatMul of 'tiny'"):
        cache.build(setup["entry"], registry.load_recipe(name), (setup["model"], setup["prov"]), setup["cal"],
                    CAL_IDS)


def test_nodes_to_exclude_keeps_matmuls_float_too(setup, tmp_path, monkeypatch):
    """``nodes_to_exclude`` means "kept float" for every node it names, whichever quantiser would
    have taken it: an excluded MatMul keeps its float weight, the others still become MatMulNBits."""
    base = setup["recipe"].options["nodes_to_exclude"]
    name = _variant(tmp_path, "nbits-keep", nodes_to_exclude=[*base, "*/layers.1/feed_forward/*"])
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    art = cache.build(setup["entry"], registry.load_recipe(name), (setup["model"], setup["prov"]), setup["cal"],
                      CAL_IDS)
    kept = ort_nbits.weight_matmuls(_graph(art))
    assert sorted(kept) == sorted(n for n in ort_nbits.weight_matmuls(_graph(setup["arts"]["fp32"]))
                                  if "layers.1/feed_forward/" in n) and len(kept) == 2
    assert {art.provenance["matmul_bits"][n] for n in kept} == {32}
    assert Counter(n.op_type for n in _graph(art).node)["MatMulNBits"] == len(art.provenance["matmul_bits"]) - 2
    assert art.size_mb > setup["arts"][RECIPE].size_mb


def test_importing_the_quantizer_leaves_logging_as_it_was():
    """onnxruntime's quantizer module calls logging.basicConfig(level=INFO) on import; serbench's
    import of it must not switch INFO logging on for the whole process (a fresh one, so the import
    really happens)."""
    code = ("import logging; from serbench.artefacts import ort_nbits; ort_nbits._quantizer(); "
            "r = logging.getLogger(); print(r.level, len(r.handlers))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(30), "0"]  # WARNING, no handler: Python's defaults


@pytest.fixture(scope="module")
def run_id(tmp_path_factory):
    """One production run of the tiny model with the int4-matmul recipe: its run id."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERBENCH_HOME", str(home))
        spec = RunSpec(model="tiny", protocol="production", recipes=(RECIPE,), weights="random:0",
                       synthetic=True, synthetic_size="tiny", measure=False)
        (result,) = [r for r in Runner(spec, progress=False, log=lambda *a: None).run() if r.recipe == RECIPE]
    return home, result.run_id


def test_export_keeps_matmulnbits_and_equals_artefact_plus_head(run_id, monkeypatch, tmp_path):
    home, rid = run_id
    monkeypatch.setenv("SERBENCH_HOME", str(home))
    out = tmp_path / "model"
    card = deploy.export(rid, out, log=lambda *a: None, measure_latency=False)
    assert card["recipe"] == RECIPE and card["verification"]["max_abs_diff"] <= card["verification"]["tolerance"]
    merged = onnx.load(str(out / runtime.MODEL_FILE))
    art = cache.load(card["backbone_artefact"]["path"])
    backbone = onnx.load(str(art.path / art.file))
    # the merged graph is the artefact's, precision untouched: same MatMulNBits nodes, and the
    # com.microsoft opset they need is still imported
    assert (Counter(n.op_type for n in merged.graph.node)["MatMulNBits"]
            == Counter(n.op_type for n in backbone.graph.node)["MatMulNBits"] > 0)
    assert "com.microsoft" in {o.domain for o in merged.opset_import}
    # and a plain onnxruntime session of it gives artefact (as serbench evaluates it) + trained head
    pre = json.loads((out / "preprocess.json").read_text())
    waves = [runtime.model_input(c[: int(sec * runtime.SAMPLE_RATE)], pre)
             for c, sec in zip(clips(2, seconds=8.0, seed=42), (8.0, 2.5))]
    with store.Store() as db:
        head, _ = select.load_head(select.heads_path(db, rid, 0))
    sess = runtime.session(out / runtime.MODEL_FILE, 1)
    got = np.stack([sess.run([runtime.OUTPUT_NAME], {runtime.INPUT_NAME: w[None]})[0][0] for w in waves])
    np.testing.assert_allclose(got, graph.reference_probabilities(art, head, waves), atol=1e-5)
