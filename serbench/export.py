"""``serbench export``: a stored run's model as a self-contained, deployable folder.

The folder holds

* ``model.onnx``: ONE graph, waveform ``input_values`` (batch, samples) float32 16 kHz ->
  ``probabilities`` (batch, classes): the run's compressed backbone artefact exactly as evaluated
  (a QDQ int8 graph stays int8) merged (``onnx.compose.merge_models``) with the fold's trained
  head exported from torch (mean over frames -> :class:`~serbench.train.LayerWeightedProbe` ->
  softmax);
* ``labels.json`` (classes and label maps), ``preprocess.json`` (the training preprocessing);
* ``vad/``: Silero VAD's ONNX model and licence, copied from the installed silero-vad package;
* ``infer.py`` + ``serbench_runtime/``: an entry script and a copy of the :mod:`serbench.runtime`
  package, which needs only numpy, soundfile and onnxruntime, and ``requirements.txt`` saying so;
* ``model_card.json`` and ``MODEL_CARD.md``: protocol, UA with std, size, latency, weights
  source, data, and the check that the merged graph reproduces backbone artefact + torch head.

Which backbone: ``--recipe`` defaults to the run's own. Another recipe is taken from the run that
the same ``serbench run`` invocation made for it (same configuration but the recipe: same folds,
same head, its own calibration and its own UA), when there is one. Otherwise an uncalibrated
recipe is rebuilt for a probe-mode run whose weights can be rebuilt (the card then says its
accuracy was not measured); a calibrated recipe is refused, since its calibration must come from
that fold's training utterances and only a run records them.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from serbench import __version__, atomic, backbones, compress, embed, heads, runtime, provenance, registry, report, store
from serbench.errors import SerbenchError
from serbench.runtime import cli as runtime_cli

HEAD_OPSET_FALLBACK = 17
VERIFY_CLIPS = 3
VERIFY_TOLERANCE = 1e-4


# ---- which run, which artefact, which head -----------------------------------------------------


def _strip(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "recipe_entry"}


def _sibling(db: store.Store, run: dict, recipe: str, fold: int) -> dict | None:
    """The finished run of the same invocation (configuration equal but for the recipe) for ``recipe``."""
    runs = db.runs()
    same = runs[(runs["model"] == run["model"]) & (runs["protocol"] == run["protocol"])
                & (runs["mode"] == run["mode"]) & (runs["recipe"] == recipe)
                & (runs["status"] == "finished")]
    for rid in sorted(same["id"], reverse=True):
        other = db.run(int(rid))
        if _strip(other["config"]) == _strip(run["config"]) and fold in db.finished_folds(int(rid)):
            return other
    return None


def weights_spec(prov: dict) -> str:
    """A ``--weights`` spec that rebuilds the weights a run used (refuses the ones it cannot)."""
    kind = prov.get("kind")
    if kind == "random":
        return f"random:{prov['seed']}"
    if kind == "hub":
        return "hub"
    if kind == "local":
        return prov["path"]
    raise SerbenchError(f"cannot rebuild weights of kind {kind!r} ({backbones.describe(prov)})")


def _rebuild(run: dict, recipe: registry.RecipeEntry) -> compress.Artefact:
    cfg = run["config"]
    if run["mode"] != "probe":
        raise SerbenchError(f"run {run['id']} fine-tuned its backbone per fold and did not keep it, so no other "
                            f"recipe can be built from it; export the run that `serbench run` made for "
                            f"recipe {recipe.name!r} (run it with --recipe {run['recipe']},{recipe.name})")
    if recipe.calibration:
        raise SerbenchError(f"recipe {recipe.name!r} is calibrated on the fold's training utterances, and only a "
                            f"run records which; run `serbench run` with --recipe {run['recipe']},{recipe.name} "
                            "and export the run it makes for that recipe")
    entry = registry.load_model(run["model"])
    if entry.content != cfg["model_entry"]:
        raise SerbenchError(f"registry entry {run['model']!r} ({entry.path}) changed since run {run['id']}; "
                            "cannot rebuild its backbone faithfully")
    spec = weights_spec(cfg["weights_source"])
    art = compress.build(entry, recipe, spec)
    if {k: v for k, v in art.provenance["weights"].items() if k != "label"} != \
            {k: v for k, v in cfg["weights_source"].items() if k != "label"}:
        raise SerbenchError(f"the weights for {run['model']!r} are no longer the ones run {run['id']} used "
                            f"({backbones.describe(cfg['weights_source'])})")
    return art


def resolve(db: store.Store, run_id: int, recipe: str | None, fold: int) -> dict:
    """What to export: ``{run, recipe, artefact, head_path, measured, note}``."""
    run = db.run(run_id)
    if run["status"] != "finished":
        raise SerbenchError(f"run {run_id} is not finished (status: {run['status']}"
                            + (f"; error: {run['error']}" if run.get("error") else "")
                            + "): its accuracy is not known, so it is not exported; `serbench run ... --resume` "
                              "finishes it")
    recipe = recipe or run["recipe"]
    registry.load_recipe(recipe)  # an unknown name fails here, with the registry's message
    note = None
    source = run
    if recipe != run["recipe"]:
        sib = _sibling(db, run, recipe, fold)
        if sib is not None:
            note = f"recipe {recipe!r} taken from run {sib['id']} (same invocation as run {run_id})"
            source = sib
    folds = db.fold_results(int(source["id"]))
    row = folds[folds["fold"] == fold]
    if row.empty:
        have = sorted(int(f) for f in folds["fold"])
        raise SerbenchError(f"run {source['id']} has no fold {fold} (it has folds {have})")
    details = row["details"].iloc[0]
    if source["recipe"] == recipe:
        path = Path(details["artefact"])
        if (path / compress.META).is_file():
            art = compress.load(path)
        else:
            art = _rebuild(source, registry.load_recipe(recipe))
            if art.path != path:
                raise SerbenchError(f"the artefact of run {source['id']} fold {fold} ({path}) is gone from the "
                                    f"cache and rebuilding gives a different one ({art.path.name})")
        measured = True
    else:
        art = _rebuild(run, registry.load_recipe(recipe))
        note = (f"recipe {recipe!r} rebuilt for export: run {run_id} measured recipe {run['recipe']!r}; "
                f"the accuracy of {recipe!r} was NOT measured")
        measured = False
    head = heads_path(db, int(source["id"]), fold)
    if not head.is_file():
        raise SerbenchError(f"{head}: the trained head of run {source['id']} fold {fold} is missing "
                            "(`serbench run` keeps heads beside the store, in <store>.runs/)")
    if art.format != "onnx":
        why = {"opensmile": "it is openSMILE's eGeMAPS feature extractor (a native binary), which has no "
                            "ONNX form",
               "inc-pt2e": "it is a torch PT2E graph run by torch.compile, not an ONNX graph"}.get(art.format, "")
        raise SerbenchError(f"cannot export recipe {recipe!r} of model {run['model']!r} as one ONNX graph: {why}. "
                            "Export an onnxruntime recipe (fp32, fp16, dynamic-int8, static-int8) of a "
                            "transformers backbone")
    return {"run": source, "asked_run": run_id, "recipe": recipe, "artefact": art, "head_path": head,
            "measured": measured, "note": note, "fold": fold, "details": details}


def heads_path(db: store.Store, run_id: int, fold: int) -> Path:
    """Where `serbench run` saved the fold's head: beside the store (``Store.run_files``)."""
    return db.run_files(run_id) / f"fold{fold}.pt"


def load_head(path: Path):
    """The saved head (eval mode: a fitted module of any head kind) and its classes."""
    return heads.restore(path)


# ---- the graph ----------------------------------------------------------------------------------


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
                          input_names=[compress.ONNX_OUTPUT], output_names=[runtime.OUTPUT_NAME],
                          dynamic_axes={compress.ONNX_OUTPUT: {0: "batch", 2: "frames"},
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
    merged = compose.merge_models(backbone, top, io_map=[(compress.ONNX_OUTPUT, compress.ONNX_OUTPUT)],
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


def reference_probabilities(artefact: compress.Artefact, head, waves) -> np.ndarray:
    """Backbone artefact (as serbench evaluates it) + torch head: the numbers the export must give."""
    import torch

    enc = compress.open_encoder(artefact, threads=1)
    X = np.stack([enc.embed(w) for w in waves])
    with torch.no_grad():
        return torch.softmax(head(torch.from_numpy(X)), dim=-1).numpy()


def verification_waves(preprocess: dict, n: int = VERIFY_CLIPS) -> list[np.ndarray]:
    """Speech-like clips of different lengths, preprocessed as the runtime does it."""
    from serbench.synth import voice

    clips = voice.probe_clips(n, seed=11, seconds=8.0)
    lengths = [8.0, 3.3, 0.4, 5.1, 1.7][:n]
    return [runtime.model_input(c[: int(s * runtime.SAMPLE_RATE)], preprocess) for c, s in zip(clips, lengths)]


def verify(model_path: Path, artefact: compress.Artefact, head, preprocess: dict) -> dict:
    waves = verification_waves(preprocess)
    ref = reference_probabilities(artefact, head, waves)
    sess = runtime.session(model_path, 1)
    got = np.stack([sess.run([runtime.OUTPUT_NAME], {runtime.INPUT_NAME: w[None]})[0][0] for w in waves])
    diff = float(np.max(np.abs(got - ref)))
    if not diff <= VERIFY_TOLERANCE:
        raise SerbenchError(f"the merged graph's probabilities differ from backbone artefact + head by {diff:.2e} "
                            f"(tolerance {VERIFY_TOLERANCE}); not exporting a model that is not the evaluated one")
    return {"clips": len(waves), "seconds": [round(w.size / runtime.SAMPLE_RATE, 2) for w in waves],
            "max_abs_diff": diff, "tolerance": VERIFY_TOLERANCE,
            "reference": "backbone artefact in onnxruntime + trained torch head"}


def latency(model_path: Path, seconds: float = 8.0, threads: int | None = None, repeats: int = 7) -> dict:
    """Median wall time of one ``seconds`` window through the exported graph (after a warm-up)."""
    import onnxruntime as ort

    threads = threads or runtime.default_threads()
    sess = runtime.session(model_path, threads)
    x = np.random.default_rng(0).normal(0, 0.1, (1, int(seconds * runtime.SAMPLE_RATE))).astype(np.float32)
    sess.run(None, {runtime.INPUT_NAME: x})
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, {runtime.INPUT_NAME: x})
        times.append(time.perf_counter() - t)
    return {"window_s": seconds, "p50_ms": round(1000 * float(np.median(times)), 2),
            "min_ms": round(1000 * float(np.min(times)), 2), "repeats": repeats, "threads": threads,
            "cpu": provenance.cpu_model(), "onnxruntime": ort.__version__}


# ---- VAD files ----------------------------------------------------------------------------------


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


# ---- the folder ---------------------------------------------------------------------------------


def export(run_id: int, out: str | Path, recipe: str | None = None, fold: int = 0,
           store_path: str | Path | None = None, force: bool = False, measure_latency: bool = True,
           log=print) -> dict:
    """Write the model folder ``out``; returns the model card (a dict)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SerbenchError(f"{out} is a file; OUT must be a folder to write (or not exist yet)")
    if out.exists() and any(out.iterdir()) and not force:
        raise SerbenchError(f"{out} exists and is not empty; choose another folder or pass --force")
    with store.Store.existing(store_path if store_path is not None else store.default_path()) as db:
        what = resolve(db, run_id, recipe, fold)
        measurements = db.measurements(int(what["run"]["id"]))
        measured_values = dict(zip(measurements["key"], measurements["value"])) if len(measurements) else {}
    run, art = what["run"], what["artefact"]
    cfg = run["config"]
    head, classes = load_head(what["head_path"])
    if list(classes) != list(cfg["classes"]):
        raise SerbenchError(f"{what['head_path']}: head classes {classes} differ from the run's {cfg['classes']}")
    stored = what["details"].get("layer_weights")
    if stored is not None and not np.allclose(head.layer_weights().detach().numpy(), stored, atol=1e-5):
        raise SerbenchError(f"{what['head_path']} is not the head run {run['id']} trained (its layer weights differ "
                            "from the stored ones): was another results store used with the same SERBENCH_HOME? "
                            "Heads are kept per run id under $SERBENCH_HOME/runs/")
    n_layers, dim = heads.shape(head)
    preprocess = {**cfg["preprocess"], "min_samples": embed.MIN_SAMPLES, "trim_frame_length": 2048,
                  "trim_hop_length": 512}

    # written into a temporary folder beside OUT and renamed into place (serbench.atomic.folder): a
    # failure (disk full, read-only, a refusal) leaves OUT as it was and no temporary behind
    with atomic.folder(out, "model folder", replace=out.exists()) as tmp:
        import onnx

        log(f"merging {art.path.name} ({art.recipe}) with the head of run {run['id']} fold {fold}")
        merged = merged_graph(art.path / art.file, head, n_layers, dim)
        meta = {"serbench.classes": json.dumps(classes), "serbench.run_id": str(run["id"]),
                "serbench.recipe": what["recipe"], "serbench.model": run["model"]}
        for k, v in meta.items():
            entry = merged.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(merged, str(tmp / runtime.MODEL_FILE))
        verified = verify(tmp / runtime.MODEL_FILE, art, head, preprocess)
        log(f"verified: max |p_export - p_reference| = {verified['max_abs_diff']:.2e} on {verified['clips']} clips")
        vad_card = write_runtime_files(tmp, classes, preprocess,
                                       label_maps={n: d.get("label_map") for n, d in cfg["data"].items()}, log=log)
        lat = latency(tmp / runtime.MODEL_FILE) if measure_latency else None
        card = model_card(what, run, art, cfg, classes, preprocess, verified, lat, vad_card, measured_values,
                          size_mb=(tmp / runtime.MODEL_FILE).stat().st_size / 1e6, head=head)
        (tmp / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
        (tmp / "MODEL_CARD.md").write_text(card_markdown(card))
    return card


def write_runtime_files(folder: Path, classes: list[str], preprocess: dict, label_maps: dict | None = None,
                        vad: bool = True, log=print) -> dict | None:
    """Everything next to ``model.onnx`` that running it needs: labels, preprocessing settings, the
    standalone ``infer.py`` with its ``serbench_runtime/`` package, ``requirements.txt`` and (when silero-vad is installed) the VAD model.
    Returns the VAD's card entry, or None when no VAD model was copied."""
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


def _stat(summary: dict | None, key: str) -> dict | None:
    if not summary or key not in summary:
        return None
    return summary[key]


def model_card(what, run, art, cfg, classes, preprocess, verified, lat, vad_card, measured, size_mb, head) -> dict:
    summary = run.get("summary") or {}
    audit = summary.get("audit", {})
    git_commit, git_dirty = provenance.git_state()
    return {
        "format": "serbench-export/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "serbench": {"version": __version__, "git_commit": git_commit, "git_dirty": git_dirty},
        "model": run["model"], "recipe": what["recipe"], "run_id": int(run["id"]),
        "asked_run_id": int(what["asked_run"]), "fold": what["fold"], "mode": run["mode"],
        "head": report.head_name(cfg), "note": what["note"],
        "classes": classes,
        "protocol": {"name": run["protocol"], "description": cfg["protocol"].get("description")
                     if isinstance(cfg.get("protocol"), dict) else None,
                     "folds": summary.get("folds"),
                     "speakers_shared_train_test": audit.get("shared_speakers_train_test")},
        "accuracy": ({"measured_by_run": int(run["id"]), "ua": _stat(summary, "ua"), "wa": _stat(summary, "wa"),
                      "macro_f1": _stat(summary, "macro_f1"), "folds": summary.get("folds")}
                     if what["measured"] else {"measured_by_run": None,
                                               "why": "this recipe was rebuilt for export; no run measured it"}),
        "size": {"model_onnx_mb": round(size_mb, 3), "backbone_artefact_mb": art.size_mb},
        "latency": lat,
        "latency_in_store": {k: v for k, v in measured.items() if "latency" in k or "rss" in k or "memory" in k},
        "weights": backbones.describe(cfg["weights_source"]),
        "weights_source": cfg["weights_source"],
        "data": {"synthetic": cfg.get("synthetic"), "corpora": cfg.get("data")},
        "preprocess": preprocess,
        "backbone_artefact": {"path": str(art.path), "format": art.format, "recipe": art.recipe,
                              "key": art.provenance.get("key"),
                              "calibration_clips": len(art.provenance.get("calibration_ids") or [])},
        "graph": {"input": f"{runtime.INPUT_NAME}: float32 (batch, samples), 16 kHz mono, preprocessed",
                  "output": f"{runtime.OUTPUT_NAME}: float32 (batch, {len(classes)}), softmax over classes",
                  "head": f"mean over frames -> {report.head_name(cfg)} head ({type(head).__name__}) -> softmax"},
        "verification": verified,
        "vad": vad_card,
        "runtime": {"entry_point": "python infer.py AUDIO... [--json] [--no-vad] [--window 8] [--hop 8]",
                    "requires": ["onnxruntime", "numpy", "soundfile"], "optional": ["soxr"]},
    }


def _pct(stat) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    return f"{100 * stat['mean']:.1f}" + (f" ± {100 * stat['std']:.1f}" if stat.get("std") is not None else "")


def card_markdown(card: dict) -> str:
    acc, lat, data = card["accuracy"], card["latency"], card["data"]
    corpora = data.get("corpora") or {}
    lines = [
        f"# {card['model']} · {card['recipe']} — speech emotion model (serbench export)",
        "",
        f"Exported from run {card['run_id']} (fold {card['fold']}, {card['mode']} mode) by serbench "
        f"{card['serbench']['version']} (commit {str(card['serbench']['git_commit'])[:10]}), {card['created']}.",
    ]
    if card.get("note"):
        lines += ["", f"**Note:** {card['note']}."]
    if data.get("synthetic"):
        lines += ["", "**Trained and evaluated on SYNTHETIC data**: the numbers say the pipeline works, not how "
                      "the model does on real speech."]
    if card["weights_source"].get("kind") == "random":
        lines += ["", "**Backbone weights are RANDOM-INIT (not pretrained).**"]
    lines += [
        "", "| | |", "|---|---|",
        f"| classes | {', '.join(card['classes'])} |",
        f"| head | {card['head']} ({card['graph']['head']}) |",
        f"| protocol | {card['protocol']['name']}: {card['protocol'].get('description') or ''} |",
        f"| speakers shared train/test (per fold) | {card['protocol'].get('speakers_shared_train_test')} |",
        f"| UA (%) | {_pct(acc.get('ua')) if acc.get('measured_by_run') else 'not measured: ' + acc['why']} |",
        f"| WA (%) | {_pct(acc.get('wa'))} |",
        f"| macro-F1 (%) | {_pct(acc.get('macro_f1'))} |",
        f"| size | model.onnx {card['size']['model_onnx_mb']:.2f} MB (backbone artefact {card['size']['backbone_artefact_mb']} MB) |",
        (f"| latency (one {lat['window_s']:g} s window) | {lat['p50_ms']:.1f} ms median, {lat['threads']} threads, "
         f"{lat['cpu']}, onnxruntime {lat['onnxruntime']} |" if lat else "| latency | not measured |"),
        f"| weights | {card['weights']} |",
        "| data | " + "; ".join(f"{n}: {d.get('utterances')} utterances, {d.get('origin')}, label map "
                                  f"{d.get('label_map')}, manifest {str(d.get('manifest_hash'))[:12]}"
                                  for n, d in corpora.items()) + " |",
        f"| verification | merged graph vs backbone artefact + torch head: max abs difference "
        f"{card['verification']['max_abs_diff']:.1e} over {card['verification']['clips']} clips |",
        "",
        "## Use",
        "",
        "```bash",
        "pip install onnxruntime numpy soundfile      # soxr optional",
        "python infer.py note.ogg                     # VAD -> 8 s windows -> averaged probabilities",
        "python infer.py note.ogg --json --no-vad --window 8 --hop 4",
        "```",
        "",
        "Preprocessing (applied by `infer.py` to each window): "
        + ", ".join(f"{k}={v}" for k, v in card["preprocess"].items()) + ".",
    ]
    if card.get("vad"):
        v = card["vad"]
        lines += ["", f"VAD: {v['model']} from {v['package']} {v['version']} ({v['licence']} licence, "
                      f"`{v['file']}`)."]
    lines += ["", "Everything else (provenance, calibration, data hashes): `model_card.json`.", ""]
    return "\n".join(lines)
