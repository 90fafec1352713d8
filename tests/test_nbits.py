"""The ``matmul-nbits`` method and its ``int4-matmul``, ``int4-convs`` and ``int4-fast`` recipes on the tiny HuBERT:
4-bit (and 8-bit, where the recipe keeps them) MatMulNBits beside int8 convs, or convs quantised
weight-only (int8, or int4 in blocks), smaller than static-int8, faithful, options checked at
load, and exported into one verified graph."""
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
CONVS = "int4-convs"
FAST = "int4-fast"
CAL_IDS = [f"train/utt{i}" for i in range(3)]


def _variant(root, name: str, base: str = RECIPE, calibration: bool | None = None, **options) -> str:
    """A copy of recipe ``base`` under another name with some options changed, in ``root`` (a
    folder for $SERBENCH_REGISTRY)."""
    base = registry.load_recipe(base)
    content = {**base.content, "name": name, "options": {**base.options, **options}}
    if calibration is not None:
        content["calibration"] = calibration
    write_entry(root, "recipes", name, content)
    return name


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """tiny (random:0), and its fp32, static-int8, int4-matmul, 2-bit-variant, int4-convs and
    every-conv-weight-only-int8 artefacts, int4-convs without GPTQ, and int4-fast."""
    root = tmp_path_factory.mktemp("nbits")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERBENCH_HOME", str(root / "home"))
        mp.setenv("SERBENCH_REGISTRY", str(root / "registry"))
        two = _variant(root / "registry", "two-bit", bits=2, matmuls_8bit=[])
        wo8 = _variant(root / "registry", "all-wo8", calibration=False, convs_weight_only=["*/conv/Conv"])
        rtn = _variant(root / "registry", "convs-rtn", base=CONVS, gptq=False)
        entry = registry.load_model("tiny")
        model, prov = backbones.build(entry, "random:0")
        cal = clips(3, seconds=1.0, seed=11)
        arts = {r: cache.build(entry, registry.load_recipe(r), (model, prov), cal, CAL_IDS)
                for r in ("fp32", "static-int8", RECIPE, two, CONVS, wo8, rtn, FAST)}
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
    # the MatMuls left (attention scores and context, the first conv's folded block: no stored
    # weight) stay float MatMuls
    assert not ort_nbits.weight_matmuls(_graph(setup["arts"][RECIPE]))


def test_convs_are_int8_as_the_static_recipe_makes_them(setup):
    graph = _graph(setup["arts"][RECIPE])
    producer = {o: n for n in graph.node for o in n.output}
    int8 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    convs = {n.name: (producer.get(n.input[0]), producer.get(n.input[1])) for n in graph.node if n.op_type == "Conv"}
    assert len(convs) == 3  # two feature-encoder convs (the first block is a MatMul) and the positional conv
    for name, (data_from, weight_from) in convs.items():
        assert weight_from.op_type == "DequantizeLinear" and weight_from.input[0] in int8, name
        assert data_from.op_type == "DequantizeLinear", name  # static: activations quantised too
    assert set(setup["arts"][RECIPE].provenance["conv_bits"].values()) == {8}


def test_int4_fast_runs_feature_encoder_convs_at_static_int8_beside_an_int4_positional_conv(setup):
    """int4-convs' MatMuls and positional conv, but the feature-encoder convs quantised by static
    (int8 activations as well as weights): the fast <= 16 MB point."""
    art = setup["arts"][FAST]
    graph = _graph(art)
    producer = {o: n for n in graph.node for o in n.output}
    init = {t.name: t.data_type for t in graph.initializer}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    pos = [c for c in convs if fnmatch.fnmatch(c, "*/pos_conv_embed/conv/Conv")]
    assert len(pos) == 1 and len(convs) == 3
    for name, conv in convs.items():
        data_from, weight_from = producer.get(conv.input[0]), producer.get(conv.input[1])
        assert weight_from.op_type == "DequantizeLinear", name
        if name in pos:       # int4 weight-only: float activations, 4-bit weights
            assert data_from is None or data_from.op_type != "DequantizeLinear", name
            assert init[weight_from.input[0]] in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4), name
        else:                 # static int8: activations quantised too
            assert data_from.op_type == "DequantizeLinear" and init[weight_from.input[0]] == onnx.TensorProto.INT8, name
    bits = art.provenance["conv_bits"]
    assert bits[pos[0]] == 4 and {b for c, b in bits.items() if c != pos[0]} == {8}
    assert art.provenance["convs_weight_only"] == pos
    assert any(n.op_type == "MatMulNBits" for n in graph.node) and not ort_nbits.weight_matmuls(graph)
    assert np.isfinite(setup["emb"][FAST]).all() and setup["emb"][FAST].shape == setup["emb"]["fp32"].shape


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
    ({"conv_block_size": 0}, "options.conv_block_size"),
    ({"conv_block_size": "48"}, "options.conv_block_size"),
    ({"convs_4bit": "*/pos_conv_embed/conv/Conv"}, "options.convs_4bit"),   # a list of patterns
    ({"convs_weight_only": [3]}, "options.convs_weight_only[0]"),
    ({"gptq": "yes"}, "options.gptq"),
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
    base = setup["recipe"].options.get("nodes_to_exclude", [])
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


def _conv_weights(art) -> dict:
    """Each conv's name -> (weight as onnxruntime dequantizes it, the DequantizeLinear node or
    None, its scale), the DequantizeLinear run alone in a session of its own."""
    import onnxruntime as ort

    model = onnx.load(str(art.path / art.file))
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    out = {}
    for conv in (n for n in g.node if n.op_type == "Conv"):
        dq = producer.get(conv.input[1])
        if dq is None:
            out[conv.name] = (onnx.numpy_helper.to_array(inits[conv.input[1]]), None, None)
            continue
        one = onnx.helper.make_model(
            onnx.helper.make_graph([dq], "dq", [], [onnx.helper.make_tensor_value_info(dq.output[0], 1, None)],
                                   [inits[i] for i in dq.input]),
            opset_imports=[o for o in model.opset_import if o.domain == ""], ir_version=model.ir_version)
        sess = ort.InferenceSession(one.SerializeToString(), providers=["CPUExecutionProvider"])
        out[conv.name] = (sess.run(None, {})[0], dq, onnx.numpy_helper.to_array(inits[dq.input[1]]))
    return out


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_int4_convs_convs_are_weight_only_dequantizes_feeding_float_convs(setup):
    """The positional conv int4 in blocks, the feature encoder's convs int8 per output channel,
    all weight-only: no conv input is quantised."""
    art, opts = setup["arts"][CONVS], registry.load_recipe(CONVS).options
    model = onnx.load(str(art.path / art.file))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    kinds = {t.name: t.data_type for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    four = [n for n in convs if any(fnmatch.fnmatch(n.name, p) for p in opts["convs_4bit"])]
    assert [n.name for n in four] == ["/model/encoder/pos_conv_embed/conv/Conv"]
    assert next(o.version for o in model.opset_import if o.domain == "") >= 21  # blocked DequantizeLinear
    for conv in convs:
        dq, data_from = producer[conv.input[1]], producer.get(conv.input[0])
        assert dq.op_type == "DequantizeLinear", conv.name
        assert data_from is None or data_from.op_type != "DequantizeLinear", conv.name  # float activations
        if conv in four:
            assert kinds[dq.input[0]] == (onnx.TensorProto.INT4 if opts["symmetric"] else onnx.TensorProto.UINT4)
            assert _attrs(dq) == {"axis": 1, "block_size": opts["conv_block_size"]}
            assert len(dq.input) == (2 if opts["symmetric"] else 3)  # a zero point only when asymmetric
        else:
            assert kinds[dq.input[0]] == onnx.TensorProto.INT8 and _attrs(dq) == {"axis": 0}, conv.name
    assert "QuantizeLinear" not in {n.op_type for n in graph.node}  # no conv was left to static
    assert art.provenance["conv_bits"] == {n.name: 4 if n in four else 8 for n in convs}
    assert sorted(art.provenance["convs_weight_only"]) == sorted(n.name for n in convs)
    assert len(art.provenance["calibration_ids"]) == len(CAL_IDS)  # calibrated all the same: GPTQ
    assert Counter(art.provenance["matmul_bits"].values()) == Counter(
        8 if any(fnmatch.fnmatch(n, p) for p in opts["matmuls_8bit"]) else 4 for n in art.provenance["matmul_bits"])


@pytest.mark.parametrize("recipe", [CONVS, "all-wo8"])
def test_weight_only_convs_dequantize_to_the_float_weights_within_their_rounding(setup, recipe):
    """What onnxruntime dequantizes is the fp32 weight up to rounding: half a step for symmetric
    weights, one step for asymmetric ones (the weight's rounding and the zero point's, half a step
    each). Checked per weight against the scale of its block (int4) or output channel (int8)."""
    art = setup["arts"][recipe]
    fp32, got = _conv_weights(setup["arts"]["fp32"]), _conv_weights(art)
    checked = 0
    for name in art.provenance["convs_weight_only"]:
        w, (dq_w, dq, scale) = fp32[name][0], got[name]
        attrs = _attrs(dq)
        if "block_size" in attrs:
            step = np.repeat(scale, attrs["block_size"], axis=1)[:, :w.shape[1]]
        else:
            step = scale.reshape((-1,) + (1,) * (w.ndim - 1))
        tolerance = step * (1.0 if len(dq.input) == 3 else 0.5)
        assert dq_w.shape == w.shape and np.all(np.abs(dq_w - w) <= tolerance * (1 + 1e-5) + 1e-12), name
        assert np.abs(dq_w - w).max() > 0  # quantised, not a float copy
        checked += 1
    assert checked == len(art.provenance["convs_weight_only"]) > 0


def test_all_convs_weight_only_int8_needs_no_calibration_and_quantizes_no_activation(setup):
    art = setup["arts"]["all-wo8"]
    graph = _graph(art)
    kinds = {t.name: t.data_type for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert art.provenance["calibration_ids"] == [] and "QuantizeLinear" not in {n.op_type for n in graph.node}
    assert sorted(art.provenance["convs_weight_only"]) == sorted(n.name for n in convs)
    for conv in convs:
        dq = producer[conv.input[1]]
        assert kinds[dq.input[0]] == onnx.TensorProto.INT8 and _attrs(dq) == {"axis": 0}, conv.name
    assert set(art.provenance["conv_bits"].values()) == {8}


def test_int4_convs_is_smaller_than_int4_matmul_and_embeds_faithfully(setup):
    """Smaller than static-int8 (the tiny net's 8-wide conv groups and 32-wide MatMuls pad the
    blocks of 48 and 128, so not smaller than int4-matmul here, as on DistilHuBERT), its 4-bit
    conv weights half the bytes of int4-matmul's int8 ones; at least the floor every quantised
    recipe must clear on this random net (as int4-matmul above), and closer to fp32 than
    int4-matmul's 2-bit variant, which must measurably lose."""
    arts, emb = setup["arts"], setup["emb"]
    assert arts[CONVS].size_mb < arts["static-int8"].size_mb
    pos = "/model/encoder/pos_conv_embed/conv/Conv"
    stored = {r: {t.name: len(t.raw_data) for t in _graph(arts[r]).initializer} for r in (CONVS, RECIPE)}
    nbytes = {r: stored[r][_conv_weights(arts[r])[pos][1].input[0]] for r in (CONVS, RECIPE)}
    assert nbytes[CONVS] * 2 == nbytes[RECIPE] > 0
    enc = encoders.open_encoder(arts[CONVS], threads=1)
    assert isinstance(enc, OrtEncoder) and emb[CONVS].shape == emb["fp32"].shape and np.isfinite(emb[CONVS]).all()
    got, two = measure.fidelity(emb["fp32"], emb[CONVS]), measure.fidelity(emb["fp32"], emb["two-bit"])
    assert got["centered_cosine"] >= 0.5 and got["rel_l2"] < 0.5, got
    assert got["centered_cosine"] > two["centered_cosine"], (got, two)
    wo8 = measure.fidelity(emb["fp32"], emb["all-wo8"])
    assert wo8["centered_cosine"] >= 0.5 and wo8["rel_l2"] < 0.5, wo8


def test_gptq_brings_the_4bit_matmuls_closer_to_fp32_than_rounding_to_nearest(setup):
    """GPTQ moves each weight's rounding error onto the weights not yet rounded, against the
    calibration clips' inputs: on the calibration clips themselves (what it minimises for, layer by
    layer) int4-convs must be closer to fp32 than the same recipe rounding to nearest, on the same
    grid: same MatMulNBits bits and block sizes, same size."""
    arts = setup["arts"]
    assert arts[CONVS].provenance["matmul_bits"] == arts["convs-rtn"].provenance["matmul_bits"]
    assert arts[CONVS].size_mb == arts["convs-rtn"].size_mb
    emb = {r: measure.embed_all(encoders.open_encoder(arts[r], threads=1), setup["cal"]) for r in
           ("fp32", CONVS, "convs-rtn")}
    gptq, rtn = (measure.fidelity(emb["fp32"], emb[r]) for r in (CONVS, "convs-rtn"))
    assert gptq["rel_l2"] < rtn["rel_l2"] and gptq["centered_cosine"] > rtn["centered_cosine"], (gptq, rtn)

@pytest.mark.parametrize("options,calibration,error", [
    ({"convs_4bit": ["*/no_such/Conv"]}, None, r"conv-err.*convs_4bit pattern '\*/no_such/Conv' matches no Conv of 'tiny'"),
    # a pattern that names a node, but no conv, picks nothing either
    ({"convs_weight_only": ["*/feature_projection/*"]}, None, r"conv-err.*convs_weight_only pattern .* matches no Conv"),
    ({"convs_weight_only": ["*/pos_conv_embed/*"]}, None, r"conv-err.*pos_conv_embed/conv/Conv' is named by more than one"),
    ({"convs_weight_only": []}, False, r"conv-err.*leaves convs to static int8, which calibrates"),
    ({}, False, r"conv-err.*gptq needs calibration: true and symmetric: false"),
    ({"symmetric": True}, None, r"conv-err.*gptq needs calibration: true and symmetric: false"),
])
def test_conv_options_that_cannot_build_are_errors_naming_the_recipe(setup, tmp_path, monkeypatch, options,
                                                                       calibration, error):
    name = _variant(tmp_path, "conv-err", base=CONVS, calibration=calibration, **options)
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    with pytest.raises(SerbenchError, match=error):
        cache.build(setup["entry"], registry.load_recipe(name), (setup["model"], setup["prov"]), setup["cal"],
                    CAL_IDS)


def test_importing_the_quantizer_leaves_logging_as_it_was():
    """onnxruntime's quantizer module calls logging.basicConfig(level=INFO) on import; serbench's
    import of it must not switch INFO logging on for the whole process (a fresh one, so the import
    really happens)."""
    code = ("import logging; from serbench.artefacts import ort_nbits; ort_nbits._quantizer(); "
            "r = logging.getLogger(); print(r.level, len(r.handlers))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(30), "0"]  # WARNING, no handler: Python's defaults


@pytest.fixture(scope="module", params=[RECIPE, CONVS])
def run_id(tmp_path_factory, request):
    """One production run of the tiny model with the int4-matmul recipe, or int4-convs (opset 21,
    int4 tensors): its home, run id and recipe."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERBENCH_HOME", str(home))
        spec = RunSpec(model="tiny", protocol="production", recipes=(request.param,), weights="random:0",
                       synthetic=True, synthetic_size="tiny", measure=False)
        (result,) = [r for r in Runner(spec, progress=False, log=lambda *a: None).run() if r.recipe == request.param]
    return home, result.run_id, request.param


def test_export_keeps_matmulnbits_and_equals_artefact_plus_head(run_id, monkeypatch, tmp_path):
    home, rid, recipe = run_id
    monkeypatch.setenv("SERBENCH_HOME", str(home))
    out = tmp_path / "model"
    card = deploy.export(rid, out, log=lambda *a: None, measure_latency=False)
    assert card["recipe"] == recipe and card["verification"]["max_abs_diff"] <= card["verification"]["tolerance"]
    merged = onnx.load(str(out / runtime.MODEL_FILE))
    art = cache.load(card["backbone_artefact"]["path"])
    backbone = onnx.load(str(art.path / art.file))
    # the merged graph is the artefact's, precision untouched: same MatMulNBits nodes, and the
    # com.microsoft opset they need is still imported
    assert (Counter(n.op_type for n in merged.graph.node)["MatMulNBits"]
            == Counter(n.op_type for n in backbone.graph.node)["MatMulNBits"] > 0)
    int4 = (onnx.TensorProto.INT4, onnx.TensorProto.UINT4)
    assert (sum(t.data_type in int4 for t in merged.graph.initializer)
            == sum(t.data_type in int4 for t in backbone.graph.initializer))  # int4-convs' blocked conv weights
    assert "com.microsoft" in {o.domain for o in merged.opset_import}
    # and a plain onnxruntime session of it gives artefact (as serbench evaluates it) + trained head
    pre = json.loads((out / "preprocess.json").read_text())
    waves = [runtime.model_input(c[: int(sec * runtime.SAMPLE_RATE)], pre)
             for c, sec in zip(clips(2, seconds=8.0, seed=42), (8.0, 2.5))]
    with store.Store() as db:
        head, _ = select.load_head(select.heads_path(db, rid, 0))
    sess = runtime.session(out / runtime.MODEL_FILE, 1)
    got = np.stack([sess.run([runtime.OUTPUT_NAME], runtime.graph_inputs(w, None))[0][0] for w in waves])
    np.testing.assert_allclose(got, graph.reference_probabilities(art, head, waves), atol=1e-5)
