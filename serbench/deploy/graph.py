"""The one ONNX graph of a model folder, the proof that it is the evaluated model, and its speed.

``model.onnx`` is the backbone's input (the 16 kHz waveform ``input_values`` (batch, samples), or
a Whisper encoder's log-mel ``input_features``: :mod:`serbench.runtime.features`, which the model
folder's runtime computes from the waveform) -> ``probabilities`` (batch, classes): the run's compressed backbone artefact exactly as evaluated (a QDQ int8 graph
stays int8) merged (``onnx.compose.merge_models``) with the fold's trained head exported from torch
(mean over frames -> the fitted head module -> softmax). One graph, so a deployment needs
onnxruntime alone and cannot pair a backbone with the wrong head.

The surgery is kept apart from choosing the run (:mod:`serbench.deploy.select`) because it is
pure ONNX and torch: the runtime tests build folders with it and no store. :func:`verify` refuses
a merged graph whose probabilities differ from backbone artefact (in onnxruntime, as serbench
evaluates it) + torch head, so an export is never a different model from the one measured.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from serbench import __version__, provenance, runtime
from serbench.artefacts import encoders
from serbench.artefacts.cache import Artefact
from serbench.artefacts.onnxruntime import ONNX_OUTPUT
from serbench.errors import SerbenchError

HEAD_OPSET_FALLBACK = 17
VERIFY_CLIPS = 3
VERIFY_TOLERANCE = 1e-4


def head_graph(head, n_layers: int, dim: int, opset: int, ir_version: int):
    """``hidden_states`` (batch, layers, frames, dim) -> mean over frames -> head -> softmax."""
    import io

    import onnx
    import torch

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = head

        def forward(self, hidden_states):
            return torch.softmax(self.head(hidden_states.mean(dim=2)), dim=-1)

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Head().eval(), (torch.zeros(1, n_layers, 7, dim),), buf,
                          input_names=[ONNX_OUTPUT], output_names=[runtime.OUTPUT_NAME],
                          dynamic_axes={ONNX_OUTPUT: {0: "batch", 2: "frames"},
                                        runtime.OUTPUT_NAME: {0: "batch"}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    model.ir_version = ir_version
    return model


def _needs(node) -> set[str]:
    """Names a node reads, including those its subgraphs (If/Loop bodies) take from outside."""
    names = {i for i in node.input if i}
    for attr in node.attribute:
        for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            inner = {o for n in g.node for o in n.output} | {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                names |= _needs(n) - inner
    return names


def toposort(graph) -> None:
    """Order ``graph.node`` so every node comes after the nodes it reads from (onnxruntime's fp16
    converter leaves input casts at the end, which onnx's checker, and so merge_models, refuses)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if _needs(node) <= known:
                ordered.append(node)
                known.update(o for o in node.output if o)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise SerbenchError(f"the backbone graph has a cycle or reads undefined tensors "
                                f"(e.g. node {rest[0].name!r} needs {sorted(_needs(rest[0]) - known)[:3]})")
        pending = rest
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def merged_graph(backbone_path: Path, head, n_layers: int, dim: int):
    """The backbone graph as it is (its precision untouched) followed by the head graph."""
    import onnx
    from onnx import compose

    backbone = onnx.load(str(backbone_path))
    toposort(backbone.graph)
    opset = next((o.version for o in backbone.opset_import if o.domain in ("", "ai.onnx")), HEAD_OPSET_FALLBACK)
    top = head_graph(head, n_layers, dim, opset, backbone.ir_version)
    out_name = "head/" + runtime.OUTPUT_NAME
    merged = compose.merge_models(backbone, top, io_map=[(ONNX_OUTPUT, ONNX_OUTPUT)],
                                  prefix2="head/", name="serbench-emotion",
                                  producer_name="serbench export", producer_version=__version__)
    for node in merged.graph.node:  # give the output its plain name back
        node.output[:] = [runtime.OUTPUT_NAME if o == out_name else o for o in node.output]
    for o in merged.graph.output:
        if o.name == out_name:
            o.name = runtime.OUTPUT_NAME
    onnx.checker.check_model(merged)
    return merged


# ---- checks and measurements --------------------------------------------------------------------


def reference_probabilities(artefact: Artefact, head, waves) -> np.ndarray:
    """Backbone artefact (as serbench evaluates it) + torch head: the numbers the export must give."""
    import torch

    enc = encoders.open_encoder(artefact, threads=1)
    X = np.stack([enc.embed(w) for w in waves])
    with torch.no_grad():
        return torch.softmax(head(torch.from_numpy(X)), dim=-1).numpy()


def verification_waves(preprocess: dict, n: int = VERIFY_CLIPS) -> list[np.ndarray]:
    """Speech-like clips of different lengths, preprocessed as the runtime does it."""
    from serbench.synth import voice

    clips = voice.probe_clips(n, seed=11, seconds=8.0)
    lengths = [8.0, 3.3, 0.4, 5.1, 1.7][:n]
    return [runtime.model_input(c[: int(s * runtime.SAMPLE_RATE)], preprocess) for c, s in zip(clips, lengths)]


def verify(model_path: Path, artefact: Artefact, head, preprocess: dict) -> dict:
    """The merged graph against backbone artefact + torch head on :func:`verification_waves`; refuses a
    difference over ``VERIFY_TOLERANCE``, else returns the card's ``verification`` entry."""
    waves = verification_waves(preprocess)
    ref = reference_probabilities(artefact, head, waves)
    sess = runtime.session(model_path, 1)
    got = np.stack([sess.run([runtime.OUTPUT_NAME], runtime.graph_inputs(w, preprocess.get("frontend")))[0][0]
                    for w in waves])
    diff = float(np.max(np.abs(got - ref)))
    if not diff <= VERIFY_TOLERANCE:
        raise SerbenchError(f"the merged graph's probabilities differ from backbone artefact + head by {diff:.2e} "
                            f"(tolerance {VERIFY_TOLERANCE}); not exporting a model that is not the evaluated one")
    return {"clips": len(waves), "seconds": [round(w.size / runtime.SAMPLE_RATE, 2) for w in waves],
            "max_abs_diff": diff, "tolerance": VERIFY_TOLERANCE,
            "reference": "backbone artefact in onnxruntime + trained torch head"}


def latency(model_path: Path, frontend: dict | None, seconds: float = 8.0, threads: int | None = None,
            repeats: int = 7) -> dict:
    """Median wall time of one ``seconds`` window through the exported graph (after a warm-up), fed
    through its ``frontend`` (:mod:`serbench.runtime.features`), whose time it includes."""
    import onnxruntime as ort

    threads = threads or runtime.default_threads()
    sess = runtime.session(model_path, threads)
    x = np.random.default_rng(0).normal(0, 0.1, int(seconds * runtime.SAMPLE_RATE)).astype(np.float32)
    sess.run(None, runtime.graph_inputs(x, frontend))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, runtime.graph_inputs(x, frontend))
        times.append(time.perf_counter() - t)
    return {"window_s": seconds, "p50_ms": round(1000 * float(np.median(times)), 2),
            "min_ms": round(1000 * float(np.min(times)), 2), "repeats": repeats, "threads": threads,
            "cpu": provenance.cpu_model(), "isa": provenance.cpu_isa(), "machine": provenance.isa_summary(),
            "onnxruntime": ort.__version__}
