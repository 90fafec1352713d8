"""The onnxruntime backend's n-bit method, ``matmul-nbits``: 4-bit weight-only MatMuls beside int8 convs.

Why two quantisers in one artefact: a wav2vec2-family backbone keeps part of its weights in
convolutions (the feature encoder and the positional conv: 38 % of DistilHuBERT's, 10 % of the
base models'), which onnxruntime's ``MatMulNBitsQuantizer`` does not take, and the rest in the
transformer's MatMuls, which static int8 stores at 8 bits. So the method runs, on one graph:

1. the ``static`` method itself (found in the method table, not re-implemented), restricted to
   ``Conv``: QDQ int8 convolutions with its calibration, per-channel weights and
   ``nodes_to_exclude``. Every ``static`` option but the op list means the same here, and
   ``nodes_to_exclude`` keeps the weight MatMuls it names float too (it means "kept float");
2. ``MatMulNBitsQuantizer`` at 8 bits on the weight MatMuls that ``matmuls_8bit`` names
   (``fnmatch`` patterns on node names, as ``nodes_to_exclude``): the sensitive ones;
3. ``MatMulNBitsQuantizer`` at ``bits`` (4) on every other weight MatMul: block-wise
   round-to-nearest weights, ``block_size`` weights sharing one scale (and zero point unless
   ``symmetric``), in the ``com.microsoft`` ``MatMulNBits`` contrib op that onnxruntime runs.
   ``accuracy_level`` 4 lets it compute in int8 (faster on CPUs with VNNI).

MatMuls between two activations (attention scores and context) hold no weights and stay float.
What each choice bought on DistilHuBERT is written in ``registry/recipes/int4-matmul.yaml``.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import logging
from pathlib import Path

from serbench.artefacts.methods import Method, find, register
from serbench.artefacts.onnxruntime import OrtEncoder, matched
from serbench.errors import SerbenchError
from serbench.schema import Field

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
)


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


def _nbits(model, bits: int, block_size: int, opts: dict, exclude: list[str]):
    quantizer = _quantizer()(model, bits=bits, block_size=block_size, is_symmetric=opts.get("symmetric", False),
                             accuracy_level=opts.get("accuracy_level"), nodes_to_exclude=exclude)
    quantizer.process()
    return quantizer.model.model


def _build(model_entry, recipe, model, clips, out: Path):
    import onnx

    opts = recipe.options
    convs = dataclasses.replace(recipe, options={**{f.name: opts[f.name] for f in CONV_OPTIONS if f.name in opts},
                                                 "op_types_to_quantize": ["Conv"]})
    file, extra = find("onnxruntime", "static").build(model_entry, convs, model, clips, out)
    graph = onnx.load(str(out / file))
    names = weight_matmuls(graph.graph)
    # nodes_to_exclude means "kept float" for MatMuls too (static has already checked its patterns)
    keep = {n for p in opts.get("nodes_to_exclude") or [] for n in fnmatch.filter(names, p)}
    eight = [n for n in matched(recipe, model_entry.name, names, "matmuls_8bit", "weight MatMul") if n not in keep]
    if eight:
        graph = _nbits(graph, 8, opts.get("block_size_8bit", 128), opts, [n for n in names if n not in eight])
    bits = opts.get("bits", 4)
    graph = _nbits(graph, bits, opts.get("block_size", 128), opts, sorted(keep))
    left = [n for n in weight_matmuls(graph.graph) if n not in keep]
    if left:  # MatMulNBits takes 2-D weights only: say so rather than ship float MatMuls unnoticed
        raise SerbenchError(f"recipe {recipe.name!r}: MatMulNBits left weight MatMuls of {model_entry.name!r} "
                            f"in float: {left[:3]}")
    onnx.save(graph, str(out / file))
    return file, {**extra, "matmul_bits": {n: 32 if n in keep else 8 if n in eight else bits for n in names}}

register(Method("onnxruntime", "matmul-nbits", CONV_OPTIONS + NBITS_OPTIONS, _build, format="onnx",
                encoder=OrtEncoder, onnx=True, calibrated=True))
