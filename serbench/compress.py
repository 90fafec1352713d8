"""Export and quantise a (backbone, recipe) pair into an artefact folder, and open artefacts.

An artefact is a folder under ``SERBENCH_HOME/artefacts/`` holding the model file(s) and an
``artefact.json`` that records everything it came from. Its name ends in a hash of everything that
changes it (model entry, recipe content, weights provenance, calibration utterance ids, library
versions), so a cached artefact is reused exactly when rebuilding would give the same thing, and
any change builds a new one. Folders are written under a temporary name and renamed into place,
so an interrupted build never leaves a half artefact that looks finished.

Every artefact opens as an encoder with one method, ``embed(wave) -> (n_layers, dim)``: the
exported graphs output all hidden states stacked, and pooling is a plain mean over frames.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from serbench import atomic, backbones, runtime, paths
from serbench.errors import SerbenchError
from serbench.provenance import package_versions
from serbench.registry import PREPROCESS_DEFAULTS, ModelEntry, RecipeEntry

FORMAT_VERSION = 1
# the libraries whose versions change an artefact's bytes: recorded in its metadata, part of its cache key
LIBRARIES = ("torch", "transformers", "onnx", "onnxruntime", "neural-compressor", "opensmile")
META = "artefact.json"
ONNX_INPUT, ONNX_OUTPUT = "input_values", "hidden_states"


@dataclass
class Artefact:
    """A built artefact: where it is, how big, and what it was built from."""

    path: Path
    model: str
    recipe: str
    format: str  # "onnx" | "inc-pt2e" | "opensmile"
    file: str | None
    size_mb: float
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def wave_id(wave: np.ndarray) -> str:
    """A content id for a calibration clip given without a name."""
    return "sha256:" + hashlib.sha256(np.ascontiguousarray(wave, dtype=np.float32).tobytes()).hexdigest()[:16]


def artefact_key(model_entry: ModelEntry, recipe: RecipeEntry, weights: dict,
                 calibration_ids: list[str]) -> str:
    """Hash of everything that changes the artefact's bytes."""
    payload = {"format": FORMAT_VERSION, "model": model_entry.content, "recipe": recipe.content,
               "weights": {k: v for k, v in weights.items() if k != "label"},
               "calibration_ids": list(calibration_ids), "versions": package_versions(LIBRARIES)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def folder_size_mb(path: Path) -> float:
    """Bytes on disk of an artefact's files (external-data files included, our metadata not), /1e6."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and p.name != META) / 1e6


def load(path: str | Path) -> Artefact:
    """Open an artefact folder's metadata."""
    path = Path(path)
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError) as exc:
        raise SerbenchError(f"{path}: not an artefact folder (cannot read {META}: {exc})") from exc
    return Artefact(**{**meta, "path": path})


def _calibration(recipe: RecipeEntry, calibration, calibration_ids):
    """The clips and ids a recipe will use (capped by its ``max_calibration_clips``)."""
    if not recipe.calibration:
        return [], []
    if not calibration:
        raise SerbenchError(f"recipe {recipe.name!r} ({recipe.path}) is calibrated: pass calibration "
                            "audio (training utterances only) and their ids")
    ids = list(calibration_ids) if calibration_ids is not None else [wave_id(w) for w in calibration]
    if len(ids) != len(calibration):
        raise SerbenchError(f"{len(calibration)} calibration clips but {len(ids)} calibration ids")
    cap = int(recipe.options.get("max_calibration_clips", len(ids)))
    return [np.asarray(w, dtype=np.float32) for w in calibration[:cap]], ids[:cap]


def build(model_entry: ModelEntry, recipe: RecipeEntry, weights="hub",
          calibration: list[np.ndarray] | None = None, calibration_ids: list[str] | None = None,
          *, force: bool = False) -> Artefact:
    """Build (or reuse from the cache) the artefact of ``model_entry`` compressed by ``recipe``.

    ``weights`` is a weights spec (``hub`` | path | ``random[:SEED]``) or an already built
    ``(model, provenance)`` pair from :func:`serbench.backbones.build` (saves rebuilding it).
    Calibration audio is used only by calibrated recipes; the ids of the clips actually used are
    recorded in the artefact's provenance and are part of its cache key.
    """
    if isinstance(weights, tuple):
        model, prov = weights
    else:
        model, prov = None, backbones.provenance(model_entry, weights)
    if model_entry.weight_free and recipe.method != "fp32":
        raise SerbenchError(f"model {model_entry.name!r} is weight-free (openSMILE features): there is "
                            f"nothing for recipe {recipe.name!r} to compress; only 'fp32' applies")
    clips, ids = _calibration(recipe, calibration, calibration_ids)
    key = artefact_key(model_entry, recipe, prov, ids)
    final = paths.home() / "artefacts" / f"{model_entry.name}--{recipe.name}--{key}"
    if (final / META).is_file() and not force:
        return load(final)
    if model is None and not model_entry.weight_free:
        model, prov = backbones.build(model_entry, weights)
    # Built in a temporary folder renamed into place: a killed or failed build (a full disk, say)
    # leaves no half-written artefact and no temporary folder, and says what could not be written.
    with atomic.folder(final, f"artefact {final.name}", replace=True) as tmp:
        fmt, file, extra = _RECIPES[(recipe.backend, recipe.method)](model_entry, recipe, model, clips, tmp)
        meta = {"model": model_entry.name, "recipe": recipe.name, "format": fmt, "file": file,
                "size_mb": round(folder_size_mb(tmp), 3),
                "provenance": {"key": key, "weights": prov, "model_entry": model_entry.content,
                               "recipe_entry": recipe.content, "calibration_ids": ids,
                               "versions": package_versions(LIBRARIES), **extra}}
        (tmp / META).write_text(json.dumps(meta, indent=2, default=str))
    return load(final)


# ---- recipes -----------------------------------------------------------------------------------


def export_onnx(model_entry: ModelEntry, model, out: Path, opset: int = 17) -> None:
    """fp32 ONNX with dynamic batch and time axes and one stacked all-hidden-states output.

    The TorchScript exporter is used: the dynamo exporter needs onnxscript, and this graph (conv
    stack + transformer) traces without data-dependent control flow.
    """
    import torch

    net = backbones.stacked(model, model_entry.normalize)
    dummy = torch.zeros(1, model_entry.sample_rate, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (dummy,), str(out), input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                          dynamic_axes={ONNX_INPUT: {0: "batch", 1: "samples"},
                                        ONNX_OUTPUT: {0: "batch", 2: "frames"}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)


def _ort_fp32(model_entry, recipe, model, clips, out: Path):
    if model_entry.weight_free:
        return "opensmile", None, {}
    export_onnx(model_entry, model, out / "model.onnx", recipe.options.get("opset", 17))
    return "onnx", "model.onnx", {}


def _ort_fp16(model_entry, recipe, model, clips, out: Path):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    work = out / "_fp32.onnx"
    export_onnx(model_entry, model, work, recipe.options.get("opset", 17))
    half = convert_float_to_float16(onnx.load(str(work)), keep_io_types=recipe.options.get("keep_io_types", True))
    onnx.save(half, str(out / "model.onnx"))
    work.unlink()
    return "onnx", "model.onnx", {}


def _preprocessed(model_entry, recipe, model, out: Path) -> Path:
    """fp32 export + onnxruntime's recommended pre-processing (shape inference, graph folding)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    raw, pre = out / "_fp32.onnx", out / "_pre.onnx"
    export_onnx(model_entry, model, raw, recipe.options.get("opset", 17))
    quant_pre_process(str(raw), str(pre), skip_symbolic_shape=True)
    raw.unlink()
    return pre


def _ort_dynamic(model_entry, recipe, model, clips, out: Path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    opts = recipe.options
    pre = _preprocessed(model_entry, recipe, model, out)
    quantize_dynamic(str(pre), str(out / "model.onnx"), weight_type=QuantType[opts.get("weight_type", "QInt8")],
                     op_types_to_quantize=opts.get("op_types_to_quantize"),
                     per_channel=opts.get("per_channel", False), reduce_range=opts.get("reduce_range", False))
    pre.unlink()
    return "onnx", "model.onnx", {}


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
    one recipe serves every model whose exporter names nodes alike (``*/conv_layers.0/conv/Conv``
    is the first conv of any wav2vec2-family model). A pattern that matches nothing is an error:
    a recipe that silently stops excluding what it says it excludes measures something else.
    """
    import fnmatch

    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = [n.name for n in graph.node]
    out = []
    for pattern in recipe.options.get("nodes_to_exclude") or []:
        hits = fnmatch.filter(names, pattern)
        if not hits:
            raise SerbenchError(f"recipe {recipe.name!r} ({recipe.path}): nodes_to_exclude pattern "
                                f"{pattern!r} matches no node of {model_name!r}'s ONNX graph")
        out += hits
    if recipe.options.get("weight_matmuls_only"):
        out += _activation_matmuls(graph)
    return list(dict.fromkeys(out))


def _ort_static(model_entry, recipe, model, clips, out: Path):
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    class Reader(CalibrationDataReader):
        """Feeds the calibration clips one at a time (batch 1, their own length)."""

        def __init__(self):
            self.it = iter(clips)

        def get_next(self):
            clip = next(self.it, None)
            return None if clip is None else {ONNX_INPUT: clip[None]}

    opts = recipe.options
    if opts.get("calibrate_method", "MinMax") != "MinMax" and clips:
        # histogram calibrators stack each tensor across clips, so clips must share one length:
        # zero-pad to the longest (as the benchmark's 8 s clips are padded anyway)
        longest = max(c.size for c in clips)
        clips = [_fit(c, longest) for c in clips]
    extra = {}
    if "calibrate_percentile" in opts:
        extra["CalibPercentile"] = float(opts["calibrate_percentile"])
    pre = _preprocessed(model_entry, recipe, model, out)
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
    pre.unlink()
    return "onnx", "model.onnx", {}


def _inc_modules():
    """neural-compressor's torch API, quiet (its INFO log prints a line per graph pattern).

    Importing it also registers the ``quantized_decomposed`` ops a saved PT2E graph refers to.
    """
    import logging

    backbones.quiet_imports()
    level = os.environ.get("LOGLEVEL")
    os.environ["LOGLEVEL"] = "ERROR"  # read once, when INC creates its logger at import
    try:
        from neural_compressor.torch.export import export
        from neural_compressor.torch.quantization import StaticQuantConfig, convert, prepare
    except ImportError as exc:
        raise SerbenchError("the neural-compressor recipes need Intel Neural Compressor's torch API: "
                            f"pip install 'neural-compressor[pt]>=3.10,<3.11' ({exc})") from exc
    finally:
        os.environ.pop("LOGLEVEL") if level is None else os.environ.__setitem__("LOGLEVEL", level)
    logging.getLogger("neural_compressor").setLevel(logging.ERROR)
    return export, StaticQuantConfig, prepare, convert


def _fold_weights(graph) -> None:
    """Store int8 weights instead of fp32 ones quantised at run time.

    INC's ``convert`` drops torchao's ``fold_quantize`` option, so its graphs keep fp32 weights
    (an fp32-sized file). This is the same constant folding ``convert_pt2e(fold_quantize=True)``
    does, followed by deleting the fp32 originals no node reads any more.
    """
    from torchao.quantization.pt2e.constant_fold import constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

    constant_fold(graph, _quant_node_constraint)
    used = {n.target for n in graph.graph.nodes if n.op == "get_attr"}
    for name, _ in list(graph.named_parameters()) + list(graph.named_buffers()):
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(graph.get_submodule(owner) if owner else graph, attr)
    graph.recompile()


def _conv1d_as_conv2d(model):
    """A copy of ``model`` whose plain Conv1d layers run as Conv2d over a height-1 input.

    INC's x86 PT2E quantiser annotates conv2d and linear but not conv1d, so without this the conv
    feature encoder (most of the compute at 8 s) would stay fp32. Numerically identical in fp32.
    Weight-normed convolutions (the positional conv) are left alone.
    """
    import copy

    import torch
    from torch.nn.utils import parametrize

    class Conv1dAs2d(torch.nn.Module):
        def __init__(self, conv: torch.nn.Conv1d):
            super().__init__()
            self.conv = torch.nn.Conv2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
                                        (1, conv.stride[0]), padding=(0, conv.padding[0]),
                                        dilation=(1, conv.dilation[0]), groups=conv.groups,
                                        bias=conv.bias is not None)
            with torch.no_grad():
                self.conv.weight.copy_(conv.weight[:, :, None, :])
                if conv.bias is not None:
                    self.conv.bias.copy_(conv.bias)

        def forward(self, x):
            return self.conv(x.unsqueeze(2)).squeeze(2)

    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if (isinstance(child, torch.nn.Conv1d) and isinstance(child.padding, tuple)
                    and child.padding_mode == "zeros" and not parametrize.is_parametrized(child)):
                setattr(module, child_name, Conv1dAs2d(child))
    return model


def _fit(wave: np.ndarray, n: int) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)[:n]
    return np.pad(wave, (0, n - wave.size)) if wave.size < n else wave


def _inc_static(model_entry, recipe, model, clips, out: Path):
    """INC 3.x PT2E static int8: export at a fixed clip length, prepare, calibrate, convert, save.

    PT2E capture wants static shapes, so everything happens at ``clip_seconds`` (the benchmark's
    clip length); :class:`IncEncoder` embeds other lengths in windows of it.
    """
    import torch

    export, StaticQuantConfig, prepare, convert = _inc_modules()
    opts = dict(recipe.options)
    n = int(round(float(opts.pop("clip_seconds", 8.0)) * model_entry.sample_rate))
    opts.pop("max_calibration_clips", None)
    fixed = [torch.from_numpy(_fit(c, n))[None] for c in clips]
    net = backbones.stacked(_conv1d_as_conv2d(model), model_entry.normalize)
    try:
        graph = export(net, (fixed[0],))
        prepared = prepare(graph, StaticQuantConfig(**opts))
        with torch.no_grad():
            for clip in fixed:
                prepared(clip)
        quantized = convert(prepared)
        _fold_weights(quantized)
        qconfig = {str(k): v.to_dict() for k, v in getattr(quantized, "qconfig", {}).items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.export.save(torch.export.export(quantized, (fixed[0],)), str(out / "model.pt2"))
    except SerbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - report the library's failure honestly, with its cause
        raise SerbenchError(f"recipe {recipe.name!r}: neural-compressor failed on {model_entry.name!r}: "
                            f"{type(exc).__name__}: {exc}") from exc
    # the conv geometry of the model actually built: the entry's YAML may leave it to the class defaults
    cfg = model.config
    return "inc-pt2e", "model.pt2", {"clip_samples": n, "conv_kernel": [int(k) for k in cfg.conv_kernel],
                                     "conv_stride": [int(s) for s in cfg.conv_stride], "inc_qconfig": qconfig}


_RECIPES = {
    ("onnxruntime", "fp32"): _ort_fp32,
    ("onnxruntime", "fp16"): _ort_fp16,
    ("onnxruntime", "dynamic"): _ort_dynamic,
    ("onnxruntime", "static"): _ort_static,
    ("neural-compressor", "static"): _inc_static,
}


# ---- encoders ----------------------------------------------------------------------------------


default_threads = runtime.default_threads  # usable cores: one definition, in the dependency-light runtime


class OrtEncoder:
    """An ONNX artefact run by onnxruntime on the CPU with a fixed, recorded thread count."""

    def __init__(self, artefact: Artefact, threads: int | None = None):
        self.threads = threads or default_threads()
        self.session = runtime.session(artefact.path / artefact.file, self.threads)
        self.sample_rate = artefact.provenance.get("model_entry", {}).get("sample_rate", 16_000)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """(batch, samples) -> (batch, layers, frames, dim)."""
        return self.session.run([ONNX_OUTPUT], {ONNX_INPUT: np.asarray(batch, dtype=np.float32)})[0]

    def embed(self, wave: np.ndarray) -> np.ndarray:
        wave = backbones.check_wave(wave, self.sample_rate)
        return self.forward(wave[None])[0].mean(axis=1).astype(np.float32)


class IncEncoder:
    """An INC PT2E int8 artefact, lowered to int8 kernels by torch.compile with inductor freezing.

    Compilation happens here, once per process (tens of seconds for DistilHuBERT on 2 cores).
    The graph has a fixed input length: shorter input is zero-padded and only the frames that
    cover real samples are pooled; longer input is embedded in windows, frames pooled across them.
    """

    def __init__(self, artefact: Artefact, threads: int | None = None):
        import torch
        from torch._inductor import config as inductor_config

        _inc_modules()
        self.threads = threads or default_threads()
        torch.set_num_threads(self.threads)
        prov = artefact.provenance
        self.n, self.kernel, self.stride = prov["clip_samples"], prov["conv_kernel"], prov["conv_stride"]
        self.sample_rate = prov.get("model_entry", {}).get("sample_rate", 16_000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.export.load(str(artefact.path / artefact.file)).module()
            self.compiled = torch.compile(module)
            with inductor_config.patch(freezing=True), torch.no_grad():
                self.compiled(torch.zeros(1, self.n))  # compiles now, with freezing (int8 kernels)

    def frames(self, samples: int) -> int:
        for k, s in zip(self.kernel, self.stride):
            samples = (samples - k) // s + 1
        return max(samples, 1)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        torch.set_num_threads(self.threads)
        with torch.no_grad():
            return np.stack([self.compiled(torch.from_numpy(_fit(w, self.n))[None])[0].numpy()
                             for w in np.asarray(batch, dtype=np.float32)])

    def embed(self, wave: np.ndarray) -> np.ndarray:
        wave = backbones.check_wave(wave, self.sample_rate)
        total, count = None, 0
        for start in range(0, wave.size, self.n):
            piece = wave[start:start + self.n]
            if start and piece.size < 0.5 * self.sample_rate:
                break  # a sliver of a last window: too short for the conv stack, skipped
            valid = min(self.frames(piece.size), self.frames(self.n))
            hidden = self.forward(piece[None])[0][:, :valid]
            total = hidden.sum(axis=1) if total is None else total + hidden.sum(axis=1)
            count += valid
        return (total / count).astype(np.float32)


def open_encoder(artefact: Artefact | str | Path, threads: int | None = None):
    """An encoder with ``embed(wave) -> (n_layers, dim)`` for any artefact."""
    if not isinstance(artefact, Artefact):
        artefact = load(artefact)
    if artefact.format == "onnx":
        return OrtEncoder(artefact, threads)
    if artefact.format == "inc-pt2e":
        return IncEncoder(artefact, threads)
    if artefact.format == "opensmile":
        return backbones.OpenSmileEncoder(_entry_from(artefact))
    raise SerbenchError(f"{artefact.path}: unknown artefact format {artefact.format!r}")


def _entry_from(artefact: Artefact) -> ModelEntry:
    c = artefact.provenance["model_entry"]
    return ModelEntry(name=c["name"], kind=c["kind"], path=artefact.path / META, content=c,
                      licence=c.get("licence", ""), feature_set=c.get("feature_set"),
                      feature_level=c.get("feature_level", "Functionals"), dim=c.get("dim"),
                      sample_rate=c.get("sample_rate", 16_000),
                      input={**PREPROCESS_DEFAULTS, **(c.get("input") or {})}, head=c.get("head"))
