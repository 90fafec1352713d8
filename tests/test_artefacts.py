"""Export and every recipe on the tiny HuBERT: loadable artefacts, the right embedding shape, sane
fidelity, calibration ids recorded, a cache keyed by everything that changes the artefact, and
the one table of methods that says what each recipe method is."""
from __future__ import annotations

import json

import numpy as np
import pytest
from _models import clips, save_tiny

from serbench import backbones, measure, registry
from serbench.artefacts import cache, encoders, methods
from serbench.errors import SerbenchError

ORT_RECIPES = ["fp32", "fp16", "dynamic-int8", "static-int8"]
CAL_IDS = [f"train/utt{i}" for i in range(3)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """tiny from a save_pretrained folder, its fp32 torch reference, and every ORT artefact."""
    root = tmp_path_factory.mktemp("artefacts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERBENCH_HOME", str(root / "home"))
        entry = registry.load_model("tiny")
        model, prov = backbones.build(entry, str(save_tiny(root / "tiny", seed=1)))
        cal = clips(3, seconds=1.0, seed=11)
        probe = clips(4, seconds=1.2, seed=12)
        ref = measure.embed_all(backbones.encoder(entry, model), probe)
        arts = {r: cache.build(entry, registry.load_recipe(r), (model, prov), cal, CAL_IDS) for r in ORT_RECIPES}
        yield {"entry": entry, "model": model, "prov": prov, "cal": cal, "probe": probe, "ref": ref,
               "arts": arts, "home": root / "home"}


@pytest.mark.parametrize("recipe", ORT_RECIPES)
def test_each_recipe_gives_a_loadable_artefact_with_sane_fidelity(setup, recipe):
    art = setup["arts"][recipe]
    loaded = cache.load(art.path)
    assert loaded.recipe == recipe and loaded.format == "onnx" and (art.path / art.file).is_file()
    assert loaded.provenance["weights"] == setup["prov"] and art.size_mb > 0
    enc = encoders.open_encoder(art.path, threads=1)
    emb = measure.embed_all(enc, setup["probe"])
    assert emb.shape == (4, 3, 32) and emb.dtype == np.float32 and np.isfinite(emb).all()
    fid = measure.fidelity(setup["ref"], emb)
    floor = {"fp32": 0.9999, "fp16": 0.99}.get(recipe, 0.5)  # int8 on a 25k-parameter random net
    assert fid["centered_cosine"] >= floor, fid
    assert fid["rel_l2"] < (1e-4 if recipe == "fp32" else 0.5), fid


def test_sizes_follow_the_recipes(setup):
    size = {r: a.size_mb for r, a in setup["arts"].items()}
    assert size["fp16"] < size["fp32"] and size["dynamic-int8"] < size["fp32"]


def test_onnx_graph_has_dynamic_batch_and_time_and_all_hidden_states(setup):
    enc = encoders.open_encoder(setup["arts"]["fp32"])
    for samples in (8000, 20000):
        out = enc.forward(np.zeros((2, samples), dtype=np.float32))
        assert out.shape[:2] == (2, 3) and out.shape[3] == 32
    assert enc.forward(np.zeros((1, 32000), np.float32)).shape[2] > enc.forward(np.zeros((1, 16000), np.float32)).shape[2]


def test_calibration_ids_are_recorded_and_only_for_calibrated_recipes(setup):
    assert setup["arts"]["static-int8"].provenance["calibration_ids"] == CAL_IDS
    assert setup["arts"]["dynamic-int8"].provenance["calibration_ids"] == []
    meta = json.loads((setup["arts"]["static-int8"].path / cache.META).read_text())
    assert meta["provenance"]["calibration_ids"] == CAL_IDS


def test_calibrated_recipe_without_calibration_fails_clearly(setup):
    with pytest.raises(SerbenchError, match="static-int8.*calibrat"):
        cache.build(setup["entry"], registry.load_recipe("static-int8"), (setup["model"], setup["prov"]))


def test_cache_reuses_and_keys_on_calibration_and_weights(setup, monkeypatch):
    monkeypatch.setenv("SERBENCH_HOME", str(setup["home"]))
    entry, recipe = setup["entry"], registry.load_recipe("static-int8")
    art = setup["arts"]["static-int8"]
    stamp = (art.path / art.file).stat().st_mtime_ns
    again = cache.build(entry, recipe, (setup["model"], setup["prov"]), setup["cal"], CAL_IDS)
    assert again.path == art.path and (art.path / art.file).stat().st_mtime_ns == stamp
    other_ids = cache.build(entry, recipe, (setup["model"], setup["prov"]), setup["cal"], ["a", "b", "c"])
    assert other_ids.path != art.path
    # a weights spec (not a built model) hits the same cache entry without rebuilding
    spec = setup["prov"]["path"]
    assert cache.build(entry, registry.load_recipe("fp32"), spec).path == setup["arts"]["fp32"].path
    other_weights = cache.build(entry, registry.load_recipe("fp32"), "random:1")
    assert other_weights.path != setup["arts"]["fp32"].path
    assert other_weights.provenance["weights"]["kind"] == "random"


def test_calibration_is_capped_by_the_recipe(setup, tmp_path, monkeypatch):
    from _models import write_entry

    write_entry(tmp_path, "recipes", "static-2", {**registry.load_recipe("static-int8").content, "name": "static-2",
                                                  "options": {**registry.load_recipe("static-int8").options,
                                                              "max_calibration_clips": 2}})
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    art = cache.build(setup["entry"], registry.load_recipe("static-2"), (setup["model"], setup["prov"]),
                         setup["cal"], CAL_IDS)
    assert art.provenance["calibration_ids"] == CAL_IDS[:2]


def test_size_counts_every_model_file_but_not_metadata(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x" * 1000)
    (tmp_path / "model.onnx.data").write_bytes(b"x" * 500_000)
    (tmp_path / cache.META).write_text("{}")
    assert cache.folder_size_mb(tmp_path) == pytest.approx(0.501)


def test_egemaps_has_only_the_fp32_recipe():
    """A weight-free kind has no artefact: its encoder is used as built, under the reference recipe."""
    entry = registry.load_model("egemaps")
    assert entry.weight_free and backbones.kind(entry).weight_free
    backbones.check_recipe(entry, registry.load_recipe("fp32"))   # the reference applies
    enc, _ = backbones.build(entry, "hub")
    assert backbones.encoder(entry, enc).embed(clips(1, seconds=1.0)[0]).shape == (1, 88)
    with pytest.raises(SerbenchError, match="weight-free"):
        cache.build(entry, registry.load_recipe("static-int8"), "hub", clips(1), ["a"])
    with pytest.raises(SerbenchError, match="weight-free"):
        cache.build(entry, registry.load_recipe("fp32"), "hub")


@pytest.fixture(scope="module")
def inc(setup):
    """The inc-int8 artefact of the tiny model, or a skip where neural-compressor is not installed
    (after checking that the recipe then fails with a clear error)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERBENCH_HOME", str(setup["home"]))
        try:
            import neural_compressor.torch.quantization  # noqa: F401
        except ImportError:
            with pytest.raises(SerbenchError, match="neural-compressor"):
                cache.build(setup["entry"], registry.load_recipe("inc-int8"), (setup["model"], setup["prov"]),
                            setup["cal"], CAL_IDS)
            pytest.skip("neural-compressor's torch API is not installed: the recipe fails with a clear error")
        return cache.build(setup["entry"], registry.load_recipe("inc-int8"), (setup["model"], setup["prov"]),
                           setup["cal"], CAL_IDS)


def _graph_arithmetic(enc):
    """The same encoder running the saved quantised graph uncompiled: int8 rounding written out as
    quantise/dequantise around fp32 ops, which no SIMD kernel choice changes."""
    import copy

    plain = copy.copy(enc)
    plain.compiled = enc._load()
    return plain


def test_inc_int8_builds_and_embeds_any_length_as_its_quantised_graph_computes(setup, inc):
    """Intel Neural Compressor PT2E: fixed-length graph, so short input is padded and long input
    windowed; either way one (layers, dim) embedding comes out. Whatever int8 kernels this CPU
    runs (AVX2, AVX-512, VNNI, AMX), the embeddings are the quantised graph's own (checked against
    it uncompiled), and so as close to fp32 as a correct int8 model of this net gets."""
    art = inc
    assert art.format == "inc-pt2e" and art.provenance["calibration_ids"] == CAL_IDS
    assert art.provenance["clip_samples"] == 128_000
    enc = encoders.open_encoder(art, threads=1)
    assert enc.kernel_check["int8_agreement"] is not None and enc.kernels
    short, long = setup["probe"][0], np.concatenate([setup["probe"][1]] * 8)  # 1.2 s and 9.6 s
    for wave in (short, long):
        out = enc.embed(wave)
        assert out.shape == (3, 32) and np.isfinite(out).all()
    emb = measure.embed_all(enc, setup["probe"])
    exact = measure.embed_all(_graph_arithmetic(enc), setup["probe"])
    assert measure.fidelity(exact, emb)["centered_cosine_worst_layer"] >= 0.99
    assert measure.fidelity(setup["ref"], emb)["centered_cosine"] >= 0.5  # the ORT int8 recipes' floor


def test_inc_int8_falls_back_to_the_graphs_arithmetic_when_the_int8_kernels_disagree(setup, inc, monkeypatch):
    """A CPU whose int8 kernels miscompute the graph (seen: oneDNN's AMX conv with stride >
    kernel, its AVX-512 kernels without VNNI) must not change a number: the encoder says so, warns,
    and runs the graph unfrozen. Simulated here by int8 kernels that shift every feature by one."""
    from serbench.artefacts import neural_compressor as nc

    real = nc.IncEncoder._compile

    def broken(self, freezing):
        compiled = real(self, freezing)
        return (lambda x: compiled(x).roll(1, dims=-1)) if freezing else compiled

    monkeypatch.setattr(nc.IncEncoder, "_compile", broken)
    with pytest.warns(RuntimeWarning, match="disagree with the quantised graph"):
        enc = encoders.open_encoder(inc, threads=1)
    assert enc.kernels.startswith("reference") and enc.kernel_check["int8_agreement"] < nc.KERNEL_AGREEMENT
    assert enc.kernel_check["reference_agreement"] >= nc.KERNEL_AGREEMENT
    emb = measure.embed_all(enc, setup["probe"][:2])
    exact = measure.embed_all(_graph_arithmetic(enc), setup["probe"][:2])
    assert measure.fidelity(exact, emb)["centered_cosine_worst_layer"] >= 0.999  # ties may round apart


@pytest.mark.slow
@pytest.mark.parametrize("isa", ["AVX2", "AVX512_CORE"])
def test_inc_int8_is_its_quantised_graph_with_onednn_capped_to(isa, inc, setup, tmp_path):
    """The kernel path depends on the CPU, so the test above is repeated with oneDNN capped to
    two ISAs every x86-64 CPU of ours has or is capped down to (a cap above the CPU is a no-op):
    AVX2, and AVX-512 without VNNI, whose u8 x s8 kernels disagree with the graph on this net
    (they saturate 16-bit sums), so that there the fallback is what keeps the numbers right."""
    import platform
    import subprocess
    import sys

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("ONEDNN_MAX_CPU_ISA names x86 ISAs")
    probe = tmp_path / "probe.npz"
    np.savez(probe, *setup["probe"])
    code = f"""
import json, warnings, numpy as np
from serbench import measure, provenance
from serbench.artefacts import encoders
warnings.simplefilter("ignore")
enc = encoders.open_encoder({str(inc.path)!r}, threads=1)
waves = list(np.load({str(probe)!r}).values())
plain = __import__("copy").copy(enc); plain.compiled = enc._load()
print(json.dumps({{"onednn": provenance.onednn_isa(), "kernels": enc.kernels,
                  "agree": measure.fidelity(measure.embed_all(plain, waves), measure.embed_all(enc, waves))}}))
"""
    env = {**__import__("os").environ, "ONEDNN_MAX_CPU_ISA": isa}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["agree"]["centered_cosine_worst_layer"] >= 0.99, got


def test_a_conv_whose_stride_exceeds_its_kernel_is_widened_with_zero_taps_exactly():
    """oneDNN 3.12's AMX conv miscomputes stride > kernel; the conv feature encoder's conv1d layers
    (run as conv2d for INC) are given a kernel as wide as the stride, its extra taps zero, and the
    same frames: identical output for every length, padding or not."""
    import torch

    from serbench.artefacts.neural_compressor import _conv1d_as_conv2d

    torch.manual_seed(0)
    for k, s, p in [(4, 8, 0), (3, 7, 2), (10, 5, 0), (2, 2, 0)]:
        net = torch.nn.Sequential(torch.nn.Conv1d(3, 5, k, s, padding=p))
        wide = _conv1d_as_conv2d(net)
        assert wide[0].conv.kernel_size[1] == max(k, s) and wide[0].conv.stride[1] == s
        for n in range(40, 56):
            x = torch.randn(2, 3, n)
            torch.testing.assert_close(wide(x), net(x), rtol=1e-5, atol=1e-5)


def _static_int8_graph(setup):
    import onnx

    return onnx.load(str(setup["arts"]["static-int8"].path / "model.onnx")).graph


def _dequantised_inputs(graph, op_type: str) -> dict[str, list[bool]]:
    """For each node of ``op_type``: which of its inputs come from a DequantizeLinear (int8 in QDQ)."""
    producer = {o: n.op_type for n in graph.node for o in n.output}
    return {n.name: [producer.get(i) == "DequantizeLinear" for i in n.input]
            for n in graph.node if n.op_type == op_type}


def test_static_int8_leaves_attention_matmuls_float_and_quantises_weights(setup):
    fed_by_dq = {name: all(fed) for name, fed in _dequantised_inputs(_static_int8_graph(setup), "MatMul").items()}
    attention = [name for name in fed_by_dq if "attention/MatMul" in name]
    assert len(attention) == 4 and any(fed_by_dq.values())  # 2 layers x (scores, context)
    assert not any(fed_by_dq[name] for name in attention)


def test_static_int8_keeps_the_first_block_float_and_gelu_whole(setup):
    """The speed choices, as they show in the graph: the first block is exported folded (one
    MatMul, no InstanceNormalization) and stays float (weight_matmuls_only: its MatMul holds no
    weight), the later convs are fed by DequantizeLinear, and GELU is one node (not Div/Erf/Mul)."""
    graph = _static_int8_graph(setup)
    convs = {name: any(fed) for name, fed in _dequantised_inputs(graph, "Conv").items()
             if "feature_extractor/conv_layers" in name}
    assert len(convs) == 2 and all(convs.values())          # tiny: conv_layers.1 and .2
    first = {name: any(fed) for name, fed in _dequantised_inputs(graph, "MatMul").items()
             if "conv_layers.0/" in name}
    assert first and not any(first.values())
    ops = {n.op_type for n in graph.node}
    assert "Gelu" in ops and "Erf" not in ops and "InstanceNormalization" not in ops


def test_exclusion_pattern_that_matches_nothing_is_an_error(setup, tmp_path, monkeypatch):
    from _models import write_entry

    base = registry.load_recipe("static-int8")
    options = {**base.options, "nodes_to_exclude": ["*/no_such/Conv"]}
    write_entry(tmp_path, "recipes", "static-typo", {**base.content, "name": "static-typo", "options": options})
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    with pytest.raises(SerbenchError, match=r"static-typo.*\*/no_such/Conv.*matches no node of 'tiny'"):
        cache.build(setup["entry"], registry.load_recipe("static-typo"), (setup["model"], setup["prov"]),
                       setup["cal"], CAL_IDS)


def test_inc_int8_takes_the_conv_geometry_from_the_built_model(tmp_path, monkeypatch):
    """An entry that leaves conv_kernel/conv_stride to the model class's defaults (HF's 7-layer
    stack) still gives an inc-int8 artefact that opens and embeds: the geometry is read from the
    built model's config, not from the YAML."""
    pytest.importorskip("neural_compressor.torch.quantization")
    from _models import tiny_entry_data, write_entry
    from transformers import HubertConfig, HubertModel

    config = {k: v for k, v in tiny_entry_data()["config"].items() if k not in ("conv_kernel", "conv_stride")}
    config["conv_dim"] = [8] * 7
    default = HubertConfig(**config)
    params = sum(p.numel() for p in HubertModel(default).parameters())
    write_entry(tmp_path, "models", "tiny-default-conv",
                tiny_entry_data(name="tiny-default-conv", params=params, config=config))
    base = registry.load_recipe("inc-int8")
    write_entry(tmp_path, "recipes", "inc-int8-short",
                {**base.content, "name": "inc-int8-short", "options": {**base.options, "clip_seconds": 1.0}})
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    monkeypatch.setenv("SERBENCH_HOME", str(tmp_path / "home"))
    entry = registry.load_model("tiny-default-conv")
    assert "conv_kernel" not in entry.config and "conv_stride" not in entry.config
    cal = clips(2, seconds=1.0, seed=11)
    art = cache.build(entry, registry.load_recipe("inc-int8-short"), "random:0", cal, CAL_IDS[:2])
    enc = encoders.open_encoder(art.path, threads=1)
    for wave in clips(2, seconds=0.7, seed=12) + clips(1, seconds=2.5, seed=13):  # padded, and windowed
        out = enc.embed(wave)
        assert out.shape == (3, 32) and np.isfinite(out).all()
    assert cache.load(art.path).provenance["conv_kernel"] == list(default.conv_kernel)
    assert cache.load(art.path).provenance["conv_stride"] == list(default.conv_stride)


def test_onnxruntime_sessions_switch_native_telemetry_off(tmp_path, monkeypatch):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from serbench import runtime

    calls = []
    monkeypatch.setattr(ort, "disable_telemetry_events", lambda: calls.append(1))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    sess = runtime.session(tmp_path / "m.onnx", threads=1)
    assert calls and sess.get_session_options().intra_op_num_threads == 1


def test_each_method_is_declared_once_with_what_the_rest_asks_of_it():
    table = methods.backends()
    assert {b: set(ms) for b, ms in table.items()} == {"onnxruntime": {"fp32", "fp16", "dynamic", "static",
                                                                       "matmul-nbits"},
                                                       "neural-compressor": {"static"}}
    references = [m for ms in table.values() for m in ms.values() if m.reference]
    assert [(m.backend, m.name) for m in references] == [("onnxruntime", "fp32")]
    assert all(m.onnx == (m.format == "onnx") for ms in table.values() for m in ms.values())
    assert {m.name for m in table["onnxruntime"].values() if m.calibrated} == {"static", "matmul-nbits"}
    assert table["neural-compressor"]["static"].calibrated
    with pytest.raises(ValueError, match="twice"):
        methods.register(table["onnxruntime"]["fp32"])


def test_the_reference_is_chosen_by_method_not_by_name(tmp_path, monkeypatch):
    from _models import write_entry

    write_entry(tmp_path, "recipes", "plain", {"name": "plain", "backend": "onnxruntime", "method": "fp32"})
    write_entry(tmp_path, "recipes", "fp32-ish", {"name": "fp32-ish", "backend": "onnxruntime", "method": "fp16"})
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    assert registry.load_recipe("plain").is_reference and not registry.load_recipe("fp32-ish").is_reference
    assert registry.reference_recipe().is_reference
