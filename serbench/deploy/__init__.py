"""``serbench export``: a stored run's model as a self-contained, deployable folder.

The folder holds

* ``model.onnx``: ONE graph, waveform -> probabilities: the run's compressed backbone artefact
  exactly as evaluated merged with the fold's trained head (:mod:`serbench.deploy.graph`);
* ``labels.json`` (classes and label maps), ``preprocess.json`` (the training preprocessing);
* ``vad/``: Silero VAD's ONNX model and licence, copied from the installed silero-vad package;
* ``infer.py`` + ``serbench_runtime/``: an entry script and a copy of the :mod:`serbench.runtime`
  package, which needs only numpy, soundfile and onnxruntime, and ``requirements.txt`` saying so;
* ``model_card.json`` and ``MODEL_CARD.md`` (:mod:`serbench.deploy.card`).

Which run, artefact and head are taken is :mod:`serbench.deploy.select`'s business. This module
holds the entry point :func:`export` and the folder writer beside it, because they are what a
caller of the package wants (``deploy.export(...)``; the runtime tests call
:func:`write_runtime_files` to make folders with no store); the submodules never import it, so the
package's imports run one way.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
from pathlib import Path

import numpy as np

from serbench import atomic, embed, heads, runtime, store
from serbench.deploy import card, graph, select
from serbench.errors import SerbenchError
from serbench.runtime import cli as runtime_cli


def export(run_id: int, out: str | Path, recipe: str | None = None, fold: int = 0,
           store_path: str | Path | None = None, force: bool = False, measure_latency: bool = True,
           log=print) -> dict:
    """Write the model folder ``out``; returns the model card (a dict)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SerbenchError(f"{out} is a file; OUT must be a folder to write (or not exist yet)")
    if out.exists() and any(out.iterdir()) and not force:
        raise SerbenchError(f"{out} exists and is not empty; choose another folder or pass --force (force=True from Python)")
    with store.Store.existing(store_path if store_path is not None else store.default_path()) as db:
        what = select.resolve(db, run_id, recipe, fold)
        measurements = db.measurements(int(what["run"]["id"]))
        measured_values = dict(zip(measurements["key"], measurements["value"])) if len(measurements) else {}
    run, art = what["run"], what["artefact"]
    cfg = run["config"]
    head, classes = select.load_head(what["head_path"])
    if list(classes) != list(cfg["classes"]):
        raise SerbenchError(f"{what['head_path']}: head classes {classes} differ from the run's {cfg['classes']}")
    stored = what["details"].get("layer_weights")
    if stored is not None and not np.allclose(head.layer_weights().detach().numpy(), stored, atol=1e-5):
        raise SerbenchError(f"{what['head_path']} is not the head run {run['id']} trained (its layer weights differ "
                            "from the stored ones): was another results store used with the same SERBENCH_HOME? "
                            "Heads are kept per run id under $SERBENCH_HOME/runs/")
    n_layers, dim = heads.shape(head)
    preprocess = {**cfg["preprocess"], "min_samples": embed.MIN_SAMPLES, "trim_frame_length": 2048,
                  "trim_hop_length": 512, "frontend": art.frontend}

    # written into a temporary folder beside OUT and renamed into place (serbench.atomic.folder): a
    # failure (disk full, read-only, a refusal) leaves OUT as it was and no temporary behind
    with atomic.folder(out, "model folder", replace=out.exists()) as tmp:
        import onnx

        log(f"merging {art.path.name} ({art.recipe}) with the head of run {run['id']} fold {fold}")
        merged = graph.merged_graph(art.path / art.file, head, n_layers, dim)
        meta = {"serbench.classes": json.dumps(classes), "serbench.run_id": str(run["id"]),
                "serbench.recipe": what["recipe"], "serbench.model": run["model"]}
        for k, v in meta.items():
            entry = merged.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(merged, str(tmp / runtime.MODEL_FILE))
        verified = graph.verify(tmp / runtime.MODEL_FILE, art, head, preprocess)
        log(f"verified: max |p_export - p_reference| = {verified['max_abs_diff']:.2e} on {verified['clips']} clips")
        vad_card = write_runtime_files(tmp, classes, preprocess,
                                       label_maps={n: d.get("label_map") for n, d in cfg["data"].items()}, log=log)
        lat = graph.latency(tmp / runtime.MODEL_FILE, art.frontend) if measure_latency else None
        doc = card.model_card(what, run, art, cfg, classes, preprocess, verified, lat, vad_card, measured_values,
                              size_mb=(tmp / runtime.MODEL_FILE).stat().st_size / 1e6, head=head)
        (tmp / "model_card.json").write_text(json.dumps(doc, indent=2, default=str))
        (tmp / "MODEL_CARD.md").write_text(card.card_markdown(doc))
    return doc


# ---- the folder beside model.onnx ---------------------------------------------------------------


def vad_files() -> dict | None:
    """Silero VAD's sequence ONNX model and licence inside the installed silero-vad package, found
    without importing it (importing it imports torch)."""
    model = runtime.installed_vad_model()
    if model is None:
        return None
    licence = None
    try:
        for f in importlib.metadata.files("silero-vad") or []:
            if f.name.upper().startswith("LICENSE"):
                licence = Path(f.locate())
                break
        version = importlib.metadata.version("silero-vad")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"model": model, "licence": licence if licence and licence.is_file() else None, "version": version}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_runtime_files(folder: Path, classes: list[str], preprocess: dict, label_maps: dict | None = None,
                        vad: bool = True, log=print) -> dict | None:
    """Everything next to ``model.onnx`` that running it needs: labels, preprocessing settings, the
    standalone ``infer.py`` with its ``serbench_runtime/`` package, ``requirements.txt`` and (when
    silero-vad is installed) the VAD model. Returns the VAD's card entry, or None when no VAD model
    was copied."""
    folder = Path(folder)
    (folder / runtime.LABELS_FILE).write_text(json.dumps({"classes": list(classes), "label_maps": label_maps or {}},
                                                       indent=2))
    (folder / runtime.PREPROCESS_FILE).write_text(json.dumps(preprocess, indent=2))
    shutil.copytree(Path(runtime.__file__).parent, folder / runtime.PACKAGE_DIR,
                    ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    (folder / runtime.ENTRY_FILE).write_text(runtime_cli.ENTRY_SCRIPT)
    (folder / "requirements.txt").write_text(
        "# runtime of this model folder: python infer.py AUDIO... (see MODEL_CARD.md)\n"
        "onnxruntime\nnumpy\nsoundfile\n# optional: soxr (resampling exactly as in training; without it a numpy "
        "resampler is used)\n")
    files = vad_files() if vad else None
    if files is None:
        if vad:
            log("warning: silero-vad is not installed, so the folder has no VAD model; infer needs --no-vad "
                "(or silero-vad installed where it runs)")
        return None
    (folder / "vad").mkdir(exist_ok=True)
    shutil.copyfile(files["model"], folder / runtime.VAD_FILE)
    if files["licence"]:
        shutil.copyfile(files["licence"], folder / "vad" / "LICENSE")
    return {"model": "Silero VAD (sequence ONNX)", "file": runtime.VAD_FILE, "package": "silero-vad",
            "version": files["version"], "licence": "MIT", "sha256": _sha256(folder / runtime.VAD_FILE)}
