"""The onnxruntime backend's n-bit method, ``matmul-nbits``: 4-bit weight-only MatMuls beside int8 convs.

Why two quantisers in one artefact: a wav2vec2-family backbone keeps part of its weights in
convolutions (the feature encoder and the positional conv: 38 % of DistilHuBERT's, 10 % of the
base models'), which onnxruntime's ``MatMulNBitsQuantizer`` does not take, and the rest in the
transformer's MatMuls, which static int8 stores at 8 bits. So the method runs, on one graph:

1. the ``static`` method's own quantisation (:func:`~serbench.artefacts.onnxruntime.static_int8`,
   not re-implemented) on the graph exported here, restricted to ``Conv``: QDQ int8 convolutions
   with its calibration, per-channel weights and ``nodes_to_exclude``. Every ``static`` option
   but the op list means the same here, and ``nodes_to_exclude`` keeps the weight MatMuls it
   names float too (it means "kept float");
2. ``MatMulNBitsQuantizer`` at 8 bits on the weight MatMuls that ``matmuls_8bit`` names
   (``fnmatch`` patterns on node names, as ``nodes_to_exclude``): the sensitive ones;
3. ``MatMulNBitsQuantizer`` at ``bits`` (4) on every other weight MatMul: block-wise
   round-to-nearest weights, ``block_size`` weights sharing one scale (and zero point unless
   ``symmetric``), in the ``com.microsoft`` ``MatMulNBits`` contrib op that onnxruntime runs.
   ``accuracy_level`` 4 lets it compute in int8 (faster on CPUs with VNNI). With ``gptq`` the
   weights are first rounded by GPTQ (:func:`_gptq`) on the calibration clips, onto the grid that
   round-to-nearest then derives again where a block's values reach both ends of its grid: on
   DistilHuBERT that, not the bit widths, is what brings 4-bit MatMuls close to fp32
   (onnxruntime's own GPTQ option had not helped). Where a block misses an end, the packing
   re-rounds it onto a slightly different grid: in a synthetic check (256 x 64 weights, block 64,
   correlated inputs) ~9 % of the weights moved by < 1 step, and the output error went from
   GPTQ's 0.052 to 0.056 (round-to-nearest alone: 0.092). Measured fidelity is of the packed
   artefact, so it includes this.

MatMuls between two activations (attention scores and context) hold no weights and stay float.

Convolutions may instead be quantised weight-only, activations float: ``convs_weight_only``
names (``fnmatch``, as above) the convs whose weights become int8 per output channel
(symmetric, as static's), ``convs_4bit`` those that become int4 in blocks of ``conv_block_size``
along the input channels (one fp32 scale per block, a uint4 zero point unless ``symmetric``),
each a ``DequantizeLinear`` feeding the float ``Conv`` (blocked int4 needs opset 21, to which the
graph is converted). Sub-8-bit convs are why: onnxruntime's quantisers give convs 8 bits or
per-channel 4 (its block-wise one takes 2-D weights only). The price is speed: onnxruntime runs
such a conv in float, so weight-only feature-encoder convs are about fp32's time. When no conv is left for static, static is not run and the recipe needs
no calibration. What each choice bought on DistilHuBERT is written in
``registry/recipes/int4-matmul.yaml``, ``int4-convs.yaml`` and ``int4-fast.yaml``.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
from pathlib import Path

import numpy as np

from serbench import backbones
from serbench.artefacts.methods import Method, find, register
from serbench.artefacts.onnxruntime import OrtEncoder, _preprocessed, matched, static_int8
from serbench.errors import SerbenchError
from serbench.runtime import features
from serbench.schema import Field, positive

# the static method's options that mean something for convolutions only: the op list is this
# method's to fix (Conv), and there are no float weight MatMuls left for weight_matmuls_only
_NOT_FOR_CONVS = ("op_types_to_quantize", "weight_matmuls_only")
CONV_OPTIONS = tuple(f for f in find("onnxruntime", "static").options if f.name not in _NOT_FOR_CONVS)


def _block_size(v: int) -> str | None:
    """MatMulNBits' rule for its ``block_size`` attribute."""
    return None if v >= 16 and v & (v - 1) == 0 else f"must be a power of two, at least 16, got {v!r}"


NBITS_OPTIONS = (
    Field("bits", int, choices=(2, 4, 8)),
    Field("block_size", int, check=_block_size),
    Field("symmetric", bool),
    Field("accuracy_level", int, choices=(0, 1, 2, 3, 4)),
    Field("matmuls_8bit", list, items=str),
    Field("block_size_8bit", int, check=_block_size),
    Field("convs_weight_only", list, items=str),
    Field("convs_4bit", list, items=str),
    Field("conv_block_size", int, check=positive),
    Field("gptq", bool),
)
BLOCKED_OPSET = 21  # DequantizeLinear's block_size and int4 inputs


def _quantizer():
    """onnxruntime's ``MatMulNBitsQuantizer``, imported without its side effect.

    Its module calls ``logging.basicConfig(level=INFO)`` when first imported, which would switch on
    INFO logging for every library in the process (and it logs a line per node): the root
    logger's handlers and level are put back, and its own logger is kept to warnings.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ModuleNotFoundError as exc:  # it imports onnx_ir, which onnxruntime does not declare
        raise SerbenchError(f"onnxruntime's MatMulNBits quantizer cannot be imported ({exc}); "
                            "pip install onnx-ir") from exc
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    return MatMulNBitsQuantizer


def weight_matmuls(graph) -> list[str]:
    """Names of the MatMul nodes whose second input is a stored weight (what MatMulNBits can take)."""
    weights = {init.name for init in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in weights]


def _gptq(model, bits_of: dict, clips, spec: dict, damp: float = 0.01) -> None:
    """GPTQ (Frantar et al. 2022) on the weight MatMuls ``bits_of`` names ({name: (bits, block)}):
    each weight row (input dimension) is rounded in turn to MatMulNBits' asymmetric grid (scale
    and zero point per ``block`` rows of a column, fixed when its block starts) and the rounding
    error is moved onto the rows not yet rounded, weighted by the inverse Hessian ``X^T X`` of the
    MatMul's input over the calibration clips (fed through the model kind's frontend ``spec``). The weights are left dequantized, on the grid that
    MatMulNBitsQuantizer's round-to-nearest then finds again wherever the block's values reach
    both ends of that grid (elsewhere it re-rounds them by less than a step: module docstring)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    nodes = [n for n in model.graph.node if n.name in bits_of]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n.input[0], 1, None) for n in nodes)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    hessian = {n.name: 0.0 for n in nodes}
    for clip in clips:
        feed = features.graph_inputs(clip, spec)
        for n, x in zip(nodes, sess.run([n.input[0] for n in nodes], feed)):
            x = x.reshape(-1, x.shape[-1]).astype(np.float64)
            hessian[n.name] = hessian[n.name] + x.T @ x
    inits = {t.name: t for t in model.graph.initializer}
    for n in nodes:
        bits, block = bits_of[n.name]
        w, h = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64), hessian[n.name]
        dead = np.diag(h) == 0
        h[dead, dead], w[dead] = 1.0, 0.0
        h += damp * np.mean(np.diag(h)) * np.eye(len(h))
        hinv = np.linalg.cholesky(np.linalg.inv(h)).T
        top = 2 ** bits - 1
        for k0 in range(0, len(w), block):
            lo, hi = np.minimum(w[k0:k0 + block].min(0), 0), np.maximum(w[k0:k0 + block].max(0), 0)
            scale = np.where(hi > lo, (hi - lo) / top, 1.0)
            zero = np.clip(np.round(-lo / scale), 0, top)
            for k in range(k0, min(k0 + block, len(w))):
                q = (np.clip(np.round(w[k] / scale) + zero, 0, top) - zero) * scale
                err, w[k] = (w[k] - q) / hinv[k, k], q
                w[k + 1:] -= np.outer(hinv[k, k + 1:], err)
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(w.astype(np.float32), n.input[1]))


def _nbits(model, bits: int, block_size: int, opts: dict, exclude: list[str]):
    quantizer = _quantizer()(model, bits=bits, block_size=block_size, is_symmetric=opts.get("symmetric", False),
                             accuracy_level=opts.get("accuracy_level"), nodes_to_exclude=exclude)
    quantizer.process()
    return quantizer.model.model


def _weight_only(graph, conv, bits: int, block: int, symmetric: bool) -> None:
    """Replaces ``conv``'s float weight initializer by a ``DequantizeLinear`` of its ``bits``-bit
    copy: int8 per output channel (axis 0), or int4 in blocks of ``block`` along axis 1."""
    from onnx import TensorProto, helper, numpy_helper

    inits = {t.name: t for t in graph.initializer}
    if conv.input[1] not in inits:
        raise SerbenchError(f"conv {conv.name!r}: its weight {conv.input[1]!r} is not a stored tensor")
    w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float32)
    base = conv.input[1]
    if bits == 8:
        scale = np.abs(w).reshape(len(w), -1).max(axis=1) / 127
        scale[scale == 0] = 1.0
        q = np.clip(np.round(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -128, 127)
        tensors = [numpy_helper.from_array(q.astype(np.int8), base + "_q8"), numpy_helper.from_array(scale, base + "_s")]
        attrs = {"axis": 0}
    else:
        n = -(-w.shape[1] // block)                     # blocks along axis 1, the last one padded
        wb = np.pad(np.moveaxis(w, 1, -1), [(0, 0)] * (w.ndim - 1) + [(0, n * block - w.shape[1])])
        wb = wb.reshape(wb.shape[:-1] + (n, block))
        lo, hi = np.minimum(wb.min(-1), 0), np.maximum(wb.max(-1), 0)
        scale = np.maximum(-lo, hi) / 7 if symmetric else (hi - lo) / 15
        scale[scale == 0] = 1.0
        zero = np.zeros_like(scale) if symmetric else np.clip(np.round(-lo / scale), 0, 15)
        q = np.clip(np.round(wb / scale[..., None]) + zero[..., None], -8 if symmetric else 0, 7 if symmetric else 15)
        q = np.moveaxis(q.reshape(q.shape[:-2] + (-1,))[..., :w.shape[1]], -1, 1)
        kind = TensorProto.INT4 if symmetric else TensorProto.UINT4
        tensors = [_packed(base + "_q4", kind, q), numpy_helper.from_array(np.moveaxis(scale, -1, 1), base + "_s")]
        if not symmetric:
            tensors.append(_packed(base + "_zp", kind, np.moveaxis(zero, -1, 1)))
        attrs = {"axis": 1, "block_size": block}
    graph.initializer.extend(tensors)
    dq = helper.make_node("DequantizeLinear", [t.name for t in tensors], [base + "_dequantized"],
                          name=conv.name + "_weight_DequantizeLinear", **attrs)
    graph.node.insert(list(graph.node).index(conv), dq)
    conv.input[1] = dq.output[0]
    if all(base not in n.input for n in graph.node):
        graph.initializer.remove(inits[base])


def _packed(name: str, kind, q: np.ndarray):
    """An INT4/UINT4 tensor, two values a byte, the first in the low nibble (ONNX's layout)."""
    from onnx import helper

    v = q.astype(np.int64).ravel() & 0xF
    v = np.append(v, 0) if v.size % 2 else v
    return helper.make_tensor(name, kind, q.shape, (v[0::2] | v[1::2] << 4).astype(np.uint8).tobytes(), raw=True)


def _build(model_entry, recipe, model, clips, out: Path):
    import onnx

    opts = recipe.options
    pre = _preprocessed(model_entry, recipe, model, out)
    try:
        graph = onnx.load(str(pre))
        nodes = [n.name for n in graph.graph.node]
        float_nodes = matched(recipe, model_entry.name, nodes, "nodes_to_exclude", "node")
        conv_names = [n.name for n in graph.graph.node if n.op_type == "Conv"]
        weight_only = {c: 8 for c in matched(recipe, model_entry.name, conv_names, "convs_weight_only", "Conv")}
        four = matched(recipe, model_entry.name, conv_names, "convs_4bit", "Conv")
        clash = sorted(set(four) & set(weight_only) | set(float_nodes) & ({*weight_only, *four}))
        if clash:
            raise SerbenchError(f"recipe {recipe.name!r} ({recipe.path}): conv {clash[0]!r} is named by more than "
                                "one of nodes_to_exclude, convs_weight_only and convs_4bit")
        weight_only.update((c, 4) for c in four)
        if [c for c in conv_names if c not in weight_only and c not in float_nodes]:  # static's int8 convs
            if not recipe.calibration:
                raise SerbenchError(f"recipe {recipe.name!r} ({recipe.path}) leaves convs to static int8, which "
                                    "calibrates: set calibration: true, or name every conv in "
                                    "convs_weight_only/convs_4bit")
            exclude = [*(opts.get("nodes_to_exclude") or []), *(glob.escape(c) for c in weight_only)]
            convs = dataclasses.replace(recipe, options={
                **{f.name: opts[f.name] for f in CONV_OPTIONS if f.name in opts},
                "op_types_to_quantize": ["Conv"], "nodes_to_exclude": exclude})
            static_int8(model_entry, convs, pre, clips, out)   # the graph already exported, not a second export
            graph = onnx.load(str(out / "model.onnx"))
    finally:
        pre.unlink(missing_ok=True)
    file = "model.onnx"
    if four and next(i.version for i in graph.opset_import if i.domain in ("", "ai.onnx")) < BLOCKED_OPSET:
        from onnx import version_converter  # before MatMulNBits, whose contrib op it does not know
        graph = version_converter.convert_version(graph, BLOCKED_OPSET)
    names = weight_matmuls(graph.graph)
    # nodes_to_exclude means "kept float" for MatMuls too
    keep = set(float_nodes) & set(names)
    eight = [n for n in matched(recipe, model_entry.name, names, "matmuls_8bit", "weight MatMul") if n not in keep]
    if opts.get("gptq"):
        if opts.get("symmetric") or not clips:
            raise SerbenchError(f"recipe {recipe.name!r} ({recipe.path}): gptq needs calibration: true and "
                                "symmetric: false (it rounds to the asymmetric grid)")
        _gptq(graph, {n: (8, opts.get("block_size_8bit", 128)) if n in eight else
                      (opts.get("bits", 4), opts.get("block_size", 128)) for n in names if n not in keep}, clips,
              backbones.frontend(model_entry))
    if eight:
        graph = _nbits(graph, 8, opts.get("block_size_8bit", 128), opts, [n for n in names if n not in eight])
    bits = opts.get("bits", 4)
    graph = _nbits(graph, bits, opts.get("block_size", 128), opts, sorted(keep))
    left = [n for n in weight_matmuls(graph.graph) if n not in keep]
    if left:  # MatMulNBits takes 2-D weights only: say so rather than ship float MatMuls unnoticed
        raise SerbenchError(f"recipe {recipe.name!r}: MatMulNBits left weight MatMuls of {model_entry.name!r} "
                            f"in float: {left[:3]}")
    for conv in [n for n in graph.graph.node if n.name in weight_only]:
        _weight_only(graph.graph, conv, weight_only[conv.name], opts.get("conv_block_size", 32),
                     opts.get("symmetric", False))
    if four:
        graph.ir_version = max(graph.ir_version, 10)  # INT4 tensors
    onnx.save(graph, str(out / file))
    return file, {"matmul_bits": {n: 32 if n in keep else 8 if n in eight else bits for n in names},
                  "conv_bits": {c: 32 if c in float_nodes else weight_only.get(c, 8) for c in conv_names},
                  "convs_weight_only": sorted(weight_only)}

register(Method("onnxruntime", "matmul-nbits", CONV_OPTIONS + NBITS_OPTIONS, _build, format="onnx",
                encoder=OrtEncoder, onnx=True, calibrated=True))
