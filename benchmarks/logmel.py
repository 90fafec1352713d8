"""Whisper's log-mel: a numpy step of the runtime, or ONNX ops inside the graph? Both, measured.

    python benchmarks/logmel.py [--data PATH] [--clips 40]

Against ``transformers.WhisperFeatureExtractor`` (the reference: what Whisper was trained on) on
real RAVDESS clips (``../shared/data/ravdess-16k``; synthetic speech when it is absent), each clip
at its own length:

* ``numpy``: :func:`serbench.runtime.features.log_mel`, what serbench runs (module docstring there);
* ``onnx fp32``: the same arithmetic in torch (``torch.stft``, the slaney filterbank as a MatMul,
  log10, clamp) exported with the TorchScript exporter at opset 17 (ONNX ``STFT``), run by
  onnxruntime: what putting the log-mel inside every artefact would mean;
* ``onnx dynamic-int8`` / ``onnx fp16``: that graph after what serbench's dynamic-int8 and fp16
  recipes do to a graph (``quantize_dynamic``, QUInt8 weights; onnxruntime's float16 converter):
  the frontend a compressed artefact would carry if the log-mel were in it.

Printed per variant: the largest absolute difference from the extractor over all clips and bins
(the features are scaled to about [-1, 1.5]) and the mean time per clip (one thread), plus the
machine, and the ops left in the dynamic-int8 graph (``quantize_dynamic`` quantises a MatMul whose
second input is a weight; the filterbank is the first, so it stays float).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent


def torch_log_mel(n_mels: int = 80):
    import torch

    from serbench.runtime import features

    filters = torch.from_numpy(features.mel_filters(n_mels).T.astype(np.float32))   # (mels, bins)

    class LogMel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("filters", filters)
            self.register_buffer("window", torch.hann_window(400, periodic=True))

        def forward(self, wave):   # (batch, samples) -> (batch, mels, frames)
            spec = torch.stft(wave, 400, 160, window=self.window, center=True, pad_mode="reflect",
                              return_complex=False)
            power = (spec[..., 0] ** 2 + spec[..., 1] ** 2)[..., :-1]
            mel = torch.log10(torch.clamp(self.filters @ power, min=1e-10))
            top = mel.amax(dim=(1, 2), keepdim=True)
            return (torch.maximum(mel, top - 8.0) + 4.0) / 4.0

    return LogMel().eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ravdess-16k")
    p.add_argument("--clips", type=int, default=40)
    args = p.parse_args(argv)
    import warnings

    from serbench import audio, provenance, runtime   # first: it switches onnxruntime's telemetry off
    from serbench.runtime import features

    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from transformers import WhisperFeatureExtractor

    if args.data.is_dir():
        files = sorted(args.data.rglob("*.flac")) + sorted(args.data.rglob("*.wav"))
        files = files[:: max(1, len(files) // args.clips)][: args.clips]
        waves, source = [audio.load(f) for f in files], f"real RAVDESS ({args.data})"
    else:
        from serbench.synth.voice import probe_clips

        waves, source = probe_clips(args.clips, seed=0, seconds=4.0), "SYNTHETIC speech (no RAVDESS found)"
    fe = WhisperFeatureExtractor(feature_size=80)
    ref = [fe(w, sampling_rate=16_000, padding="longest", return_tensors="np").input_features[0] for w in waves]

    work = Path(tempfile.mkdtemp(prefix="serbench-logmel-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch_log_mel(), (torch.zeros(1, 16_000),), str(work / "fp32.onnx"),
                          input_names=["wave"], output_names=["mel"],
                          dynamic_axes={"wave": {0: "batch", 1: "samples"}, "mel": {0: "batch", 2: "frames"}},
                          opset_version=17, dynamo=False)
    quantize_dynamic(str(work / "fp32.onnx"), str(work / "int8.onnx"), weight_type=QuantType.QUInt8)
    onnx.save(convert_float_to_float16(onnx.load(str(work / "fp32.onnx")), keep_io_types=True),
              str(work / "fp16.onnx"))
    ops = sorted({n.op_type for n in onnx.load(str(work / "int8.onnx")).graph.node})

    def onnx_variant(name):
        sess = runtime.session(work / f"{name}.onnx", 1)
        return lambda w: sess.run(None, {"wave": w[None]})[0][0]

    variants = {"numpy (serbench.runtime.features)": features.log_mel,
                "onnx fp32 (STFT in the graph)": onnx_variant("fp32"),
                "onnx dynamic-int8": onnx_variant("int8"), "onnx fp16": onnx_variant("fp16")}
    rows = []
    for name, fn in variants.items():
        fn(waves[0])
        t0 = time.perf_counter()
        got = [fn(w) for w in waves]
        ms = 1000 * (time.perf_counter() - t0) / len(waves)
        worst = max(float(np.max(np.abs(g - r))) for g, r in zip(got, ref))
        rows.append([name, f"{worst:.2e}", f"{ms:.2f}"])
    t0 = time.perf_counter()
    for w in waves:
        fe(w, sampling_rate=16_000, padding="longest", return_tensors="np")
    rows.append(["WhisperFeatureExtractor itself", "0", f"{1000 * (time.perf_counter() - t0) / len(waves):.2f}"])
    secs = np.array([w.size / 16_000 for w in waves])
    print(f"Whisper log-mel (80 bins) on {len(waves)} clips of {secs.min():.1f}-{secs.max():.1f} s, {source}; "
          f"measured on {provenance.isa_summary()}")
    print(tabulate(rows, headers=["variant", "max |diff| vs WhisperFeatureExtractor", "ms per clip (1 thread)"],
                   disable_numparse=True))
    print(f"ops in the dynamic-int8 frontend graph: {', '.join(ops)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
