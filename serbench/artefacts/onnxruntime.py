"""The onnxruntime backend: the network exported to ONNX, optionally quantised, run by onnxruntime.

Its methods: ``fp32`` (the plain export: the uncompressed reference every other recipe is
compared with), ``fp16`` (onnxruntime's float16 converter), ``dynamic`` and ``static`` int8
(``onnxruntime.quantization``). Each is registered at the bottom of this module with the recipe
options it understands, beside the function that builds it. Every artefact is one ONNX graph,
the model kind's input in (the waveform, or Whisper's log-mel: :mod:`serbench.runtime.features`)
and all hidden states stacked out, opened by :class:`OrtEncoder` (pooling is a plain mean over
frames: a graph fed padding keeps only the frames holding audio). onnxruntime, onnx and torch are imported inside the functions that use them:
the registry reads this module's declarations to validate recipe files, and must stay fast.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from serbench import backbones, runtime
from serbench.artefacts import first_conv
from serbench.artefacts.cache import Artefact, fit
from serbench.artefacts.methods import MAX_CALIBRATION_CLIPS, Method, register
from serbench.entries import ModelEntry, RecipeEntry
from serbench.errors import SerbenchError
from serbench.runtime import features
from serbench.schema import Field, within

ONNX_OUTPUT = "hidden_states"  # the inputs are the model kind's (serbench.runtime.features)
# Option values are names that the methods look up in onnxruntime.quantization's QuantType /
# QuantFormat / CalibrationMethod enums (QuantType[...]), so a misspelt name (QUint8) must fail when
# the recipe is loaded, not as a KeyError in the middle of `bench`. Only the 8-bit QuantTypes: the
# recipes are int8 ones (a test checks that these names exist in onnxruntime).
QUANT_TYPES = ("QInt8", "QUInt8")
QUANT_FORMATS = ("QDQ", "QOperator")
CALIBRATE_METHODS = ("MinMax", "Entropy", "Percentile", "Distribution")


def export_onnx(model_entry: ModelEntry, model, out: Path, opset: int = 17) -> None:
    """fp32 ONNX of the kind's network (:func:`serbench.backbones.network`), its inputs the kind's
    frontend declares, with dynamic batch and time axes and one stacked all-hidden-states output.

    The TorchScript exporter is used: the dynamo exporter needs onnxscript, and these graphs (conv
    stack + transformer) trace without data-dependent control flow.
    """
    import torch

    net = backbones.network(model_entry, model)
    names, dummy, axes = backbones.export_spec(model_entry)
    with first_conv.folded(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, dummy, str(out), input_names=names, output_names=[ONNX_OUTPUT],
                          dynamic_axes={**axes, ONNX_OUTPUT: {0: "batch", 2: "frames"}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)


def _fp32(model_entry, recipe, model, clips, out: Path):
    """The plain export: the reference (also the first step of every other method here)."""
    export_onnx(model_entry, model, out / "model.onnx", recipe.options.get("opset", 17))
    return "model.onnx", {}


def _fp16(model_entry, recipe, model, clips, out: Path):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    work = out / "_fp32.onnx"
    export_onnx(model_entry, model, work, recipe.options.get("opset", 17))
    half = convert_float_to_float16(onnx.load(str(work)), keep_io_types=recipe.options.get("keep_io_types", True))
    onnx.save(half, str(out / "model.onnx"))
    work.unlink()
    return "model.onnx", {}


def _preprocessed(model_entry, recipe, model, out: Path) -> Path:
    """fp32 export + onnxruntime's recommended pre-processing (shape inference, graph folding)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    raw, pre = out / "_fp32.onnx", out / "_pre.onnx"
    export_onnx(model_entry, model, raw, recipe.options.get("opset", 17))
    quant_pre_process(str(raw), str(pre), skip_symbolic_shape=True)
    raw.unlink()
    return pre


def _dynamic(model_entry, recipe, model, clips, out: Path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    opts = recipe.options
    pre = _preprocessed(model_entry, recipe, model, out)
    quantize_dynamic(str(pre), str(out / "model.onnx"), weight_type=QuantType[opts.get("weight_type", "QInt8")],
                     op_types_to_quantize=opts.get("op_types_to_quantize"),
                     per_channel=opts.get("per_channel", False), reduce_range=opts.get("reduce_range", False))
    pre.unlink()
    return "model.onnx", {}


def _activation_matmuls(graph) -> list[str]:
    """MatMul nodes with no weight input (attention scores and context: activation x activation).

    Quantising those adds a requantisation of every attention matrix and was measurably slower
    than leaving them in float, for no size gain (they hold no weights).
    """
    weights = {init.name for init in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not weights.intersection(n.input)]


def _excluded_nodes(recipe: RecipeEntry, model_name: str, path: Path) -> list[str]:
    """Names of the nodes a static recipe keeps in float.

    ``nodes_to_exclude`` holds shell-style patterns (``fnmatch``) matched against node names, so
    one recipe serves every model whose exporter names nodes alike (``*/pos_conv_embed/conv/Conv``
    is the positional conv of any wav2vec2-family model). A pattern that matches nothing is an
    error: a recipe that silently stops excluding what it says it excludes measures something
    else. The folded first block's MatMuls (:func:`first_conv.float_nodes`) are always kept float.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    out = matched(recipe, model_name, [n.name for n in graph.node], "nodes_to_exclude", "node")
    if recipe.options.get("weight_matmuls_only"):
        out += _activation_matmuls(graph)
    out += first_conv.float_nodes(graph)
    return list(dict.fromkeys(out))


def matched(recipe: RecipeEntry, model_name: str, names: list[str], option: str, what: str) -> list[str]:
    """The ``names`` that the recipe's ``option`` patterns (shell-style, ``fnmatch``) pick, in
    pattern order, each once. A pattern that picks none is an error naming the recipe: a recipe
    that silently stops excluding (or keeping) what it says measures something else."""
    import fnmatch

    out = []
    for pattern in recipe.options.get(option) or []:
        hits = fnmatch.filter(names, pattern)
        if not hits:
            raise SerbenchError(f"recipe {recipe.name!r} ({recipe.path}): {option} pattern {pattern!r} "
                                f"matches no {what} of {model_name!r}'s ONNX graph")
        out += hits
    return list(dict.fromkeys(out))


def _static(model_entry, recipe, model, clips, out: Path):
    pre = _preprocessed(model_entry, recipe, model, out)
    try:
        static_int8(model_entry, recipe, pre, clips, out)
    finally:
        pre.unlink(missing_ok=True)
    return "model.onnx", {}


def static_int8(model_entry, recipe, pre: Path, clips, out: Path) -> None:
    """The ``static`` method's quantisation of an already pre-processed graph ``pre`` (see
    :func:`_preprocessed`) into ``out/model.onnx``; apart so that a method which has exported
    the graph for its own use (``matmul-nbits``) quantises that one rather than export again."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    spec = backbones.frontend(model_entry)

    class Reader(CalibrationDataReader):
        """Feeds the calibration clips one at a time (batch 1, their own length), through the
        model kind's frontend."""

        def __init__(self):
            self.it = iter(clips)

        def get_next(self):
            clip = next(self.it, None)
            return None if clip is None else features.graph_inputs(clip, spec)

    opts = recipe.options
    if opts.get("calibrate_method", "MinMax") != "MinMax" and clips:
        # histogram calibrators stack each tensor across clips, so clips must share one length:
        # zero-pad to the longest (as the benchmark's 8 s clips are padded anyway)
        longest = max(c.size for c in clips)
        clips = [fit(c, longest) for c in clips]
    extra = {}
    if "calibrate_percentile" in opts:
        extra["CalibPercentile"] = float(opts["calibrate_percentile"])
    exclude = _excluded_nodes(recipe, model_entry.name, pre)
    # Not CalibMaxIntermediateOutputs: onnxruntime 1.31 discards, rather than folds, the ranges
    # collected before each flush. MinMax keeps only per-tensor extremes; the histogram methods
    # keep activations, so recipes using them cap their clip count (max_calibration_clips).
    kwargs = dict(quant_format=QuantFormat[opts.get("quant_format", "QDQ")],
                  op_types_to_quantize=opts.get("op_types_to_quantize"),
                  per_channel=opts.get("per_channel", False), reduce_range=opts.get("reduce_range", False),
                  activation_type=QuantType[opts.get("activation_type", "QUInt8")],
                  weight_type=QuantType[opts.get("weight_type", "QInt8")],
                  calibrate_method=CalibrationMethod[opts.get("calibrate_method", "MinMax")],
                  nodes_to_exclude=exclude or None, extra_options=extra)
    with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress
        quantize_static(str(pre), str(out / "model.onnx"), Reader(), **kwargs)


class OrtEncoder:
    """An ONNX artefact run by onnxruntime with a fixed, recorded thread count: on the CPU, or for a
    float method (``gpu``) on a CUDA device when onnxruntime has its CUDA provider (the
    onnxruntime-gpu package) and a device is visible. Integer recipes always run on the CPU
    kernels they ship with. ``device`` says which."""

    def __init__(self, artefact: Artefact, threads: int | None = None):
        self.threads = threads or runtime.default_threads()
        self.device = "cuda" if artefact.method.gpu and runtime.cuda_available() else "cpu"
        self.session = runtime.session(artefact.path / artefact.file, self.threads, cuda=self.device == "cuda")
        self.sample_rate = artefact.provenance.get("model_entry", {}).get("sample_rate", 16_000)
        self.spec = artefact.frontend

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """(batch, samples) -> (batch, layers, frames, dim), equal-length waveforms."""
        return self.session.run([ONNX_OUTPUT], features.batch_inputs(np.asarray(batch, dtype=np.float32),
                                                                     self.spec))[0]

    def embed(self, wave: np.ndarray) -> np.ndarray:
        wave = backbones.check_wave(wave, self.sample_rate)
        return self.forward(wave[None])[0].mean(axis=1).astype(np.float32)


# ---- the methods, each with the recipe options it understands ---------------------------------

# opsets the backbones export at (torch 2.13, measured on the tiny HuBERT): 13 and below lack
# scaled_dot_product_attention, and torch's exporter stops at 23 ("Unsupported onnx_opset_version")
OPSET = Field("opset", int, check=within(14, 23, lo_open=False))
WEIGHT_TYPE = Field("weight_type", str, choices=QUANT_TYPES)
OP_TYPES = Field("op_types_to_quantize", list, items=str)
PER_CHANNEL, REDUCE_RANGE = Field("per_channel", bool), Field("reduce_range", bool)


def _method(name: str, options: tuple[Field, ...], build, **flags) -> Method:
    return register(Method("onnxruntime", name, options, build, format="onnx", encoder=OrtEncoder, onnx=True,
                           **flags))


_method("fp32", (OPSET,), _fp32, reference=True, gpu=True)
_method("fp16", (OPSET, Field("keep_io_types", bool)), _fp16, gpu=True)
_method("dynamic", (OPSET, WEIGHT_TYPE, OP_TYPES, PER_CHANNEL, REDUCE_RANGE), _dynamic)
_method("static", (OPSET, WEIGHT_TYPE, OP_TYPES, PER_CHANNEL, REDUCE_RANGE,
                   Field("quant_format", str, choices=QUANT_FORMATS),
                   Field("activation_type", str, choices=QUANT_TYPES),
                   Field("calibrate_method", str, choices=CALIBRATE_METHODS),
                   Field("calibrate_percentile", float, check=within(0, 100)),
                   MAX_CALIBRATION_CLIPS,
                   Field("nodes_to_exclude", list, items=str),
                   Field("weight_matmuls_only", bool)), _static, calibrated=True)
