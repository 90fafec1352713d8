"""The neural-compressor backend: Intel Neural Compressor 3.x PT2E static int8, run by torch.compile.

One method, ``static``: the network captured at a fixed clip length, calibrated on training clips,
converted to int8 and saved as a torch.export program (``model.pt2``); :class:`IncEncoder` lowers
it to int8 kernels with inductor freezing when opened. Registered at the bottom of this module with
the recipe options it passes to ``neural_compressor.torch.quantization.StaticQuantConfig``. It
has no ONNX form (INC's ONNX export path needs numpy<2), so ``serbench export`` refuses it. torch
and neural-compressor are imported inside the functions that use them: the registry reads this
module's declarations to validate recipe files, and must stay fast.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from serbench import backbones, runtime
from serbench.artefacts.cache import Artefact, fit
from serbench.artefacts.methods import MAX_CALIBRATION_CLIPS, Method, register
from serbench.errors import SerbenchError
from serbench.schema import Field, positive


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


def _static(model_entry, recipe, model, clips, out: Path):
    """INC 3.x PT2E static int8: export at a fixed clip length, prepare, calibrate, convert, save.

    PT2E capture wants static shapes, so everything happens at ``clip_seconds`` (the benchmark's
    clip length); :class:`IncEncoder` embeds other lengths in windows of it.
    """
    import torch

    export, StaticQuantConfig, prepare, convert = _inc_modules()
    opts = dict(recipe.options)
    n = int(round(float(opts.pop("clip_seconds", 8.0)) * model_entry.sample_rate))
    opts.pop("max_calibration_clips", None)
    fixed = [torch.from_numpy(fit(c, n))[None] for c in clips]
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
    return "model.pt2", {"clip_samples": n, "conv_kernel": [int(k) for k in cfg.conv_kernel],
                         "conv_stride": [int(s) for s in cfg.conv_stride], "inc_qconfig": qconfig}


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
        self.threads = threads or runtime.default_threads()
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
            return np.stack([self.compiled(torch.from_numpy(fit(w, self.n))[None])[0].numpy()
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


# ---- the method, with the recipe options it understands (StaticQuantConfig's, plus two of ours) ---

GRANULARITY = ("per_channel", "per_tensor")
register(Method("neural-compressor", "static", (
    Field("w_dtype", str), Field("act_dtype", str),
    Field("w_sym", bool), Field("act_sym", bool),
    Field("w_granularity", str, choices=GRANULARITY), Field("act_granularity", str, choices=GRANULARITY),
    Field("w_algo", str), Field("act_algo", str),
    Field("clip_seconds", float, check=positive),
    MAX_CALIBRATION_CLIPS,
), _static, format="inc-pt2e", encoder=IncEncoder, onnx=False, calibrated=True))
