"""The model card of a model folder: ``model_card.json`` (everything) and ``MODEL_CARD.md`` (for people).

A folder travels without the results store, so the card carries what is needed to judge the model
away from it: protocol, UA/WA/macro-F1 with their std over folds (or the plain statement that the
recipe was rebuilt and never measured), size, latency, weights source, data (and whether it was
synthetic), preprocessing, the backbone artefact's provenance, and the check that the merged graph
reproduces backbone artefact + torch head. Numbers are formatted by :mod:`serbench.fmt` only.
"""
from __future__ import annotations

from datetime import datetime, timezone

from serbench import __version__, backbones, fmt, provenance, runtime
from serbench.runtable import head_name


def _stat(summary: dict | None, key: str) -> dict | None:
    if not summary or key not in summary:
        return None
    return summary[key]


def model_card(what, run, art, cfg, classes, preprocess, verified, lat, vad_card, measured, size_mb, head) -> dict:
    """The card as a dict: ``what`` from :func:`serbench.deploy.select.resolve`, ``verified`` and ``lat``
    from :mod:`serbench.deploy.graph`, ``measured`` the run's stored measurements by key."""
    summary = run.get("summary") or {}
    audit = summary.get("audit", {})
    git_commit, git_dirty = provenance.git_state()
    return {
        "format": "serbench-export/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "serbench": {"version": __version__, "git_commit": git_commit, "git_dirty": git_dirty},
        "model": run["model"], "recipe": what["recipe"], "run_id": int(run["id"]),
        "asked_run_id": int(what["asked_run"]), "fold": what["fold"], "mode": run["mode"],
        "head": head_name(cfg), "note": what["note"],
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
        "graph": {"input": runtime.features.describe(art.frontend),
                  "output": f"{runtime.OUTPUT_NAME}: float32 (batch, {len(classes)}), softmax over classes",
                  "head": f"mean over frames -> {head_name(cfg)} head ({type(head).__name__}) -> softmax"},
        "verification": verified,
        "vad": vad_card,
        "runtime": {"entry_point": "python infer.py AUDIO... [--json] [--no-vad] [--window 8] [--hop 8]",
                    "requires": ["onnxruntime", "numpy", "soundfile"], "optional": ["soxr"]},
    }


def _pct(stat) -> str:
    return fmt.mean_std((stat or {}).get("mean"), (stat or {}).get("std"), missing="-")


def card_markdown(card: dict) -> str:
    """``MODEL_CARD.md``: the warnings (synthetic data, random weights) first, then the numbers, then use."""
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
         f"{lat.get('machine') or lat['cpu']}, onnxruntime {lat['onnxruntime']} |" if lat else "| latency | not measured |"),
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
