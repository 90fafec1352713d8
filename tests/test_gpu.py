"""The GPU paths: fine-tuning on a CUDA device, float ONNX encoders on onnxruntime's CUDA
provider, and the hardware each is recorded with. Skipped where there is no GPU (CI); the CPU
side of the same record is checked in test_sweep.py."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")


def _waves(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(16_000) / 16_000
    y = np.arange(n) % 2
    waves = [(0.3 * np.sin(2 * np.pi * (200 + 300 * k) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
             for k in y]
    return waves, y


def test_finetune_runs_on_the_gpu_and_records_it():
    from serbench import backbones, provenance, registry
    from serbench.finetune import FinetuneConfig, finetune

    entry = registry.load_model("tiny")
    net, _ = backbones.build(entry, "random:0")
    (wt, yt), (wv, yv) = _waves(8, 0), _waves(4, 1)
    classes = ["a", "b"]
    res = finetune(net, wt, [classes[i] for i in yt], wv, [classes[i] for i in yv], classes,
                   FinetuneConfig(epochs=1, batch_size=4, augment=False), entry=entry)
    assert res.device == "cuda"
    assert next(res.backbone.parameters()).device.type == "cpu"     # handed back on the CPU
    hw = provenance.hardware(res.device)
    assert hw == f"cuda: {torch.cuda.get_device_name(0)}"


def test_float_onnx_encoders_run_on_onnxruntime_cuda_and_integer_ones_on_the_cpu(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here (the onnxruntime-gpu package)")
    from serbench import backbones, registry
    from serbench.artefacts import cache, encoders

    entry = registry.load_model("tiny")
    built = backbones.build(entry, "random:0")
    fp32 = encoders.open_encoder(cache.build(entry, registry.load_recipe("fp32"), built))
    int8 = encoders.open_encoder(cache.build(entry, registry.load_recipe("dynamic-int8"), built))
    assert fp32.device == "cuda" and "CUDAExecutionProvider" in fp32.session.get_providers()
    assert int8.device == "cpu" and int8.session.get_providers() == ["CPUExecutionProvider"]
