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

from serbench import backbones, provenance, runtime
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
    feature encoder (most of the compute at 8 s) would stay fp32. Numerically identical in fp32,
    also where a conv whose stride exceeds its kernel is widened with zero taps (see below).
    Weight-normed convolutions (the positional conv) are left alone.
    """
    import copy

    import torch
    from torch.nn.utils import parametrize

    class Conv1dAs2d(torch.nn.Module):
        def __init__(self, conv: torch.nn.Conv1d):
            super().__init__()
            (k,), (s,), (p,), (d,) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
            # stride > kernel (gaps between windows): the same conv with the kernel widened to the
            # stride by zero taps, over input padded on the right so the frame count is unchanged.
            # oneDNN 3.12's AMX brgemm conv mis-sizes its copy buffer when stride > kernel (oneDNN
            # PR 5494, fixed in 3.13; torch 2.13 ships 3.12), and zero taps quantise exactly.
            self.widen = s - k if s > k and d == 1 and conv.groups == 1 else 0
            self.pad = (p, p + self.widen) if self.widen else None
            self.conv = torch.nn.Conv2d(conv.in_channels, conv.out_channels, (1, k + self.widen), (1, s),
                                        padding=(0, 0 if self.widen else p), dilation=(1, d), groups=conv.groups,
                                        bias=conv.bias is not None)
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.weight[..., :k].copy_(conv.weight[:, :, None, :])
                if conv.bias is not None:
                    self.conv.bias.copy_(conv.bias)

        def forward(self, x):
            if self.pad:
                x = torch.nn.functional.pad(x, self.pad)
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

    PT2E capture wants static shapes, so a waveform-fed network is captured at ``clip_seconds``
    (the benchmark's clip length) and :class:`IncEncoder` embeds other lengths in windows of it. A
    Whisper encoder is captured with a dynamic frame axis instead (:func:`_dynamic_frames`) and runs
    each clip at its own length: padded to 8 s its fp32 features were measured to move away from the
    clip's own (centred cosine 0.63 at the last layer on real RAVDESS), which fixed-length capture
    would have charged to quantisation.
    """
    import torch

    export, StaticQuantConfig, prepare, convert = _inc_modules()
    opts = dict(recipe.options)
    n = int(round(float(opts.pop("clip_seconds", 8.0)) * model_entry.sample_rate))
    opts.pop("max_calibration_clips", None)
    spec = backbones.frontend(model_entry)
    if spec.get("positions") == "pad":
        raise SerbenchError(f"recipe {recipe.name!r} ({recipe.path}) cannot build {model_entry.name!r}: its Whisper "
                            "positions are 'pad', whose graph keeps the frames holding audio by a count that PT2E "
                            "capture cannot hold fixed; use an entry with positions: cut")
    dynamic = _dynamic_frames(spec)
    fixed = [_odd_frames(backbones.torch_inputs(spec, [c])) if dynamic else backbones.torch_inputs(spec, [fit(c, n)])
             for c in clips]
    net = backbones.network(model_entry, _conv1d_as_conv2d(model))
    try:
        graph = export(net, fixed[0], dynamic_shapes=dynamic)
        prepared = prepare(graph, StaticQuantConfig(**opts))
        with torch.no_grad():
            for clip in fixed:
                prepared(*clip)
        quantized = convert(prepared)
        _fold_weights(quantized)
        qconfig = {str(k): v.to_dict() for k, v in getattr(quantized, "qconfig", {}).items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # re-exported, the converted graph's frame axis is bounded by the example's length (seen
            # with torch 2.13: max = the example), so a dynamic one is given the longest input it takes
            example = (_odd_frames(backbones.torch_inputs(spec, [np.zeros(int(spec["max_samples"]), np.float32)]))
                       if dynamic else fixed[0])
            torch.export.save(torch.export.export(quantized, example, dynamic_shapes=dynamic), str(out / "model.pt2"))
    except SerbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - report the library's failure honestly, with its cause
        raise SerbenchError(f"recipe {recipe.name!r}: neural-compressor failed on {model_entry.name!r}: "
                            f"{type(exc).__name__}: {exc}") from exc
    extra = {"clip_samples": None if dynamic else n, "dynamic_frames": bool(dynamic), "inc_qconfig": qconfig}
    if spec["name"] == "waveform":  # the frames a window yields follow from the conv geometry
        cfg = model.config  # of the model actually built: the entry's YAML may leave it to the class defaults
        extra.update(conv_kernel=[int(k) for k in cfg.conv_kernel], conv_stride=[int(s) for s in cfg.conv_stride])
    return "model.pt2", extra


def _dynamic_frames(spec: dict):
    """torch.export's dynamic shapes for a log-mel frontend's frame axis (None: the waveform is
    captured at a fixed length). Whisper's attention reshape makes torch guard on ``(T - 1) // 2``,
    which it can prove for every odd frame count ``T = 2f - 1`` but not for all ``T``."""
    if spec["name"] != "whisper-log-mel":
        return None
    import torch

    f = torch.export.Dim("encoder_frames", min=5, max=int(spec["max_samples"]) // (2 * int(spec["hop_length"])))
    return ({2: 2 * f - 1},)


def _odd_frames(inputs: tuple) -> tuple:
    """Log-mel frames cut to an odd count (:func:`_dynamic_frames`): an even count loses its last
    frame, which leaves the encoder's frame count, ``ceil(T / 2)``, unchanged."""
    x = inputs[0]
    return (x[..., : x.shape[-1] - 1 + x.shape[-1] % 2],) + tuple(inputs[1:])


#: the least agreement (worst layer's mean frame cosine, centred) between the compiled int8 kernels
#: and the quantised graph's own arithmetic for the kernels to be used; on the tiny test model,
#: oneDNN's AVX2 and AVX-512 VNNI kernels agree to > 0.999 (rounding at a few ties differs)
KERNEL_AGREEMENT = 0.99


def agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Worst layer's mean frame cosine of two ``(layers, frames, dim)`` outputs, both centred on the
    reference's mean frame of that layer (a shared offset would hide a wrong result)."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    mu = ref.mean(axis=1, keepdims=True)
    a, b = ref - mu, got - mu
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
    return float(cos.mean(axis=1).min())


class IncEncoder:
    """An INC PT2E int8 artefact, lowered to int8 kernels by torch.compile with inductor freezing.

    Compilation happens here, once per process (tens of seconds for DistilHuBERT on 2 cores).
    A waveform graph has a fixed input length: shorter input is zero-padded and only the frames
    that cover real samples are pooled; longer input is embedded in windows, frames pooled across
    them. A log-mel graph captured with a dynamic frame axis runs each clip at its own length.

    The kernels are checked before use. The saved graph is the quantised model's arithmetic
    written out (quantise, dequantise, fp32 conv/linear); inductor replaces those patterns by
    whatever int8 kernels oneDNN picks for this CPU (AVX2, AVX-512 VNNI, AMX ...). A kernel that
    miscomputes a shape on one ISA would silently change every number measured with it, so one
    fixed speech-like clip is embedded both ways: if the compiled kernels disagree with the graph
    (below :data:`KERNEL_AGREEMENT`), the graph is compiled without freezing instead (the same
    int8 rounding, run as fp32 arithmetic: correct on every CPU, not int8-fast) and
    :attr:`kernels` says so, with the agreement found, so a speed measured with it is never taken
    for the int8 kernels'.
    """

    def __init__(self, artefact: Artefact, threads: int | None = None):
        import torch

        _inc_modules()
        self.threads = threads or runtime.default_threads()
        torch.set_num_threads(self.threads)
        prov = artefact.provenance
        self.n, self.kernel, self.stride = prov["clip_samples"], prov.get("conv_kernel"), prov.get("conv_stride")
        self.spec, self.dynamic = artefact.frontend, bool(prov.get("dynamic_frames"))
        self.sample_rate = prov.get("model_entry", {}).get("sample_rate", 16_000)
        self._program = artefact.path / artefact.file
        probe = self._check_clip()
        with torch.no_grad():
            want = self._load()(*probe)[0].numpy()
        self.compiled = self._compile(freezing=True)
        int8 = agreement(want, self._run(probe))
        self.kernel_check = {"int8_agreement": round(int8, 5), "threshold": KERNEL_AGREEMENT}
        if int8 >= KERNEL_AGREEMENT:
            # with a symbolic frame axis these measured slower than fp32 (whisper-tiny.en; why was not traced)
            self.kernels = "int8 (inductor freezing, oneDNN" + (", dynamic frame axis)" if self.dynamic else ")")
            return
        warnings.warn(f"{artefact.path}: the int8 kernels torch compiled on this CPU ({provenance.isa_summary()}) "
                      f"disagree with the quantised graph (agreement {int8:.4f} < {KERNEL_AGREEMENT}); "
                      "running the graph's own arithmetic instead (correct, not int8-fast)", RuntimeWarning,
                      stacklevel=2)
        self.compiled = self._compile(freezing=False)
        plain = agreement(want, self._run(probe))
        self.kernel_check["reference_agreement"] = round(plain, 5)
        if plain < KERNEL_AGREEMENT:
            raise SerbenchError(f"{artefact.path}: neither the int8 kernels ({int8:.4f}) nor the unfrozen graph "
                                f"({plain:.4f}) reproduce the quantised graph on this CPU; nothing was scored")
        self.kernels = "reference (the int8 kernels failed the check on this CPU)"

    def _check_clip(self):

        from serbench.synth.voice import probe_clips

        seconds = 3.0 if self.dynamic else self.n / self.sample_rate
        clip = probe_clips(1, seed=2024, seconds=seconds, sr=self.sample_rate)[0]
        return self._inputs(clip)

    def _inputs(self, wave: np.ndarray) -> tuple:
        """The graph's inputs for one waveform: at its own length (odd frames) when the graph was
        captured with a dynamic frame axis, else at the fixed length it was captured at."""
        if self.dynamic:
            return _odd_frames(backbones.torch_inputs(self.spec, [wave]))
        return backbones.torch_inputs(self.spec, [fit(wave, self.n)])

    def _load(self):
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.load(str(self._program)).module()

    def _compile(self, freezing: bool):
        import torch
        from torch._inductor import config as inductor_config

        compiled = torch.compile(self._load(), dynamic=True if self.dynamic else None)
        warm = np.zeros(self.sample_rate if self.dynamic else self.n, np.float32)
        with warnings.catch_warnings(), inductor_config.patch(freezing=freezing), torch.no_grad():
            warnings.simplefilter("ignore")
            compiled(*self._inputs(warm))  # compiles now (freezing: the int8 kernels)
        return compiled

    def _run(self, inputs: tuple) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.compiled(*inputs)[0].numpy()

    def frames(self, samples: int) -> int:
        """Output frames of a waveform graph that cover ``samples`` of audio (its conv geometry)."""
        for k, s in zip(self.kernel, self.stride):
            samples = (samples - k) // s + 1
        return max(samples, 1)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        torch.set_num_threads(self.threads)
        with torch.no_grad():
            return np.stack([self.compiled(*self._inputs(w))[0].numpy() for w in np.asarray(batch, dtype=np.float32)])

    def embed(self, wave: np.ndarray) -> np.ndarray:
        wave = backbones.check_wave(wave, self.sample_rate)
        if self.dynamic:   # the clip at its own length: every frame holds audio
            return self.forward(wave[None])[0].mean(axis=1).astype(np.float32)
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
