"""Does VAD remove a bias toward "neutral" on long voice notes? (the reference paper's claim)

One seeded command:

    python benchmarks/vad_notes.py                    # writes reports/vad/vad_notes.{json,md}

1. trains and stores a model with ``serbench run`` on the synthetic IEMOCAP-like corpus
   (production protocol, probe mode; default DistilHuBERT with RANDOM-INIT weights, because no
   pretrained weights can be downloaded here and eGeMAPS has no ONNX form), and exports it with
   ``serbench export``;
2. builds long synthetic voice notes (default 10 per class, 60-120 s each): utterances of ONE
   emotion by a held-out synthetic speaker (drawn from a seed the corpora never use), joined with
   pauses of background noise (a quiet noise floor throughout, plus louder room/traffic-like noise
   in the pauses), through a random recording channel;
3. runs ``serbench infer`` on every note with VAD and with ``--no-vad`` (8 s windows, 8 s hop;
   and 3 s windows, the length of the training utterances), and classifies some utterances alone
   (what the model does on these speakers without any pauses or windowing);
4. reports note-level accuracy (= UA: the classes are balanced), the share of notes predicted
   neutral, the share of windows predicted neutral, and confusion matrices.

Everything runs in its own SERBENCH_HOME (``--home``; default ``$SERBENCH_HOME/benchmarks/vad_notes``)
so its runs and heads never mix with the user's store. Numbers on synthetic speech with random
backbone weights show what the pipeline does, not how a pretrained model does on real notes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

SR = 16_000
CLASSES = ("angry", "happy", "neutral", "sad")
REPO = Path(__file__).resolve().parent.parent


# ---- notes --------------------------------------------------------------------------------------


def background(n: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """Room/traffic-like noise: brown-ish low-passed noise with a slow level wobble."""
    x = rng.normal(0, 1, n)
    sos = scipy.signal.butter(2, float(rng.uniform(300, 1500)), fs=SR, output="sos")
    x = scipy.signal.sosfilt(sos, x)
    x = x / (np.std(x) + 1e-12)
    wobble = 1 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * np.arange(n) / SR + rng.uniform(0, 6.3))
    return (level * x * wobble).astype(np.float32)


def make_note(emotion: str, seconds: float, rng: np.random.Generator, speaker=None,
              pause=(1.5, 6.0), utt=(1.2, 3.5)):
    """One long note: ``(audio 16 kHz float32, [(start_s, end_s) of each utterance], [utterances])``.

    Utterance lengths and the recording channel are drawn like the synthetic IEMOCAP corpus's
    (1.2-3.5 s, SNR 22-32 dB, room 0.15), so that apart from the pauses the notes differ from the
    training data only in their (held-out) speakers.
    """
    from serbench.synth import voice

    speaker = speaker or voice.random_speaker("note", "MF"[int(rng.integers(2))], rng)
    channel = voice.Channel.random(rng, snr_db=(22, 32), room=0.15)
    parts, spans, utts, t = [], [], [], 0.0
    speech_level = None
    while t < seconds:
        gap = float(rng.uniform(*pause))
        parts.append(("gap", int(gap * SR)))
        t += gap
        if t >= seconds:
            break
        y = voice.utterance(speaker, emotion, float(rng.uniform(*utt)), rng, channel=channel, lead=(0.05, 0.2))
        speech_level = float(np.sqrt(np.mean(y ** 2))) if speech_level is None else speech_level
        parts.append(("utt", y))
        spans.append((t, t + y.size / SR))
        utts.append(y)
        t += y.size / SR
    speech_level = speech_level or 0.05
    floor = speech_level * 10 ** (-float(rng.uniform(30, 40)) / 20)      # noise floor under everything
    noisy = speech_level * 10 ** (-float(rng.uniform(8, 16)) / 20)       # background noise in the pauses
    out = []
    for kind, v in parts:
        if kind == "gap":
            out.append(background(v, rng, noisy))
        else:
            out.append(v.astype(np.float32))
    y = np.concatenate(out)
    y = y + rng.normal(0, floor, y.size).astype(np.float32)
    peak = float(np.max(np.abs(y)))
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32), spans, utts


def note_speakers(n: int, seed: int):
    """Held-out speakers: drawn from a generator seeded apart from every synthetic corpus."""
    from serbench.synth import voice

    rng = np.random.default_rng([seed, 424242])
    return [voice.random_speaker(f"held{i}", "MF"[i % 2], rng) for i in range(n)]


# ---- model --------------------------------------------------------------------------------------


def train_and_export(args, home: Path) -> Path:
    """A finished run in this benchmark's home (reused when its configuration matches), exported."""
    import serbench

    out = home / "exports" / f"{args.model}-{args.weights.replace(':', '')}-{args.size}-{args.recipe}"
    if (out / "model_card.json").is_file() and not args.retrain:
        return out
    print(f"training: serbench run --model {args.model} --weights {args.weights} --protocol production "
          f"--synthetic --synthetic-size {args.size} --recipe {args.recipe} --seed {args.seed}", flush=True)
    run = serbench.run(args.model, "production", args.recipe, weights=args.weights, synthetic=True,
                       synthetic_size=args.size, seed=args.seed, measure=False, home=home).iloc[0]
    print(f"  run {run['run_id']}: test UA {100 * run['ua']:.1f} % (pooled)", flush=True)
    serbench.export(int(run["run_id"]), out, force=True, home=home)
    return out


# ---- evaluation ---------------------------------------------------------------------------------


def confusion(y_true, y_pred, labels) -> list[list[int]]:
    m = np.zeros((len(labels), len(labels)), int)
    for t, p in zip(y_true, y_pred):
        if p in labels:
            m[labels.index(t), labels.index(p)] += 1
    return m.tolist()


def summarise(rows: list[dict], labels) -> dict:
    scored = [r for r in rows if r["pred"] is not None]
    recalls = []
    for c in labels:
        mine = [r for r in rows if r["true"] == c]
        if mine:
            recalls.append(np.mean([r["pred"] == c for r in mine]))
    windows = [w for r in rows for w in r.get("window_preds", [])]
    return {
        "items": len(rows),
        "answered": len(scored),
        "accuracy": float(np.mean([r["pred"] == r["true"] for r in rows])) if rows else None,
        "ua": float(np.mean(recalls)) if recalls else None,
        "share_predicted_neutral": float(np.mean([r["pred"] == "neutral" for r in rows])) if rows else None,
        "share_non_neutral_predicted_neutral": float(np.mean([r["pred"] == "neutral" for r in rows
                                                              if r["true"] != "neutral"])),
        "windows": len(windows),
        "share_windows_neutral": float(np.mean([w == "neutral" for w in windows])) if windows else None,
        "confusion": confusion([r["true"] for r in rows], [r["pred"] for r in rows], list(labels)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--notes-per-class", type=int, default=10)
    ap.add_argument("--min-seconds", type=float, default=60.0)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--model", default="distilhubert")
    ap.add_argument("--weights", default="random:0")
    ap.add_argument("--size", default="small", choices=["tiny", "small", "medium"], help="synthetic corpus size")
    ap.add_argument("--recipe", default="fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--home", help="SERBENCH_HOME for this benchmark (default $SERBENCH_HOME/benchmarks/vad_notes)")
    ap.add_argument("--out", default=str(REPO / "reports" / "vad"), help="where the report goes")
    ap.add_argument("--short-windows", type=float, nargs="*", default=[3.0],
                    help="also run with these window lengths (hop = window), e.g. the training clips' length")
    ap.add_argument("--utterances-per-note", type=int, default=4,
                    help="utterances of each note also classified alone (the model's own bias on these speakers)")
    ap.add_argument("--retrain", action="store_true", help="train and export again even if an export exists")
    args = ap.parse_args(argv)

    from serbench import paths

    home = Path(args.home) if args.home else paths.home() / "benchmarks" / "vad_notes"
    home.mkdir(parents=True, exist_ok=True)
    from serbench import runtime

    t0 = time.perf_counter()
    model_dir = train_and_export(args, home)
    card = json.loads((model_dir / "model_card.json").read_text())
    model = runtime.EmotionModel(model_dir, args.threads)
    vad = runtime.SileroVad(runtime.find_vad_model(model_dir))
    labels = model.labels
    assert tuple(labels) == CLASSES, labels

    conditions = [("vad", True, 8.0), ("no_vad", False, 8.0)]
    for w in args.short_windows:
        conditions += [(f"vad_{w:g}s", True, w), (f"no_vad_{w:g}s", False, w)]
    notes_dir = home / "notes" / f"seed{args.seed}-n{args.notes_per_class}-{args.min_seconds:g}-{args.max_seconds:g}"
    notes_dir.mkdir(parents=True, exist_ok=True)
    speakers = note_speakers(len(CLASSES) * args.notes_per_class, args.seed)
    rows = {name: [] for name, _, _ in conditions}
    rows["utterances"] = []
    i = 0
    print(f"{len(speakers)} notes of {args.min_seconds:g}-{args.max_seconds:g} s, held-out speakers", flush=True)
    for c in CLASSES:
        for k in range(args.notes_per_class):
            rng = np.random.default_rng([args.seed, 99, i])
            seconds = float(rng.uniform(args.min_seconds, args.max_seconds))
            y, spans, utts = make_note(c, seconds, rng, speaker=speakers[i])
            path = notes_dir / f"{i:03d}-{c}.flac"
            sf.write(path, y, SR, subtype="PCM_16")
            speech = sum(b - a for a, b in spans)
            for name, use_vad, w in conditions:
                r = runtime.analyse(path, model, runtime.Options(vad=use_vad, window=w, hop=w), vad if use_vad else None)
                rows[name].append({"note": path.name, "true": c, "pred": r["emotion"], "status": r["status"],
                                   "seconds": r["duration_s"], "speech_s_truth": round(speech, 2),
                                   "speech_s_vad": r["speech_s"], "windows": r["windows"],
                                   "distribution": r["distribution"],
                                   "window_preds": [w_["emotion"] for w_ in r["timeline"] if w_.get("emotion")]})
            for j, u in enumerate(utts[: args.utterances_per_note]):   # utterances alone, as in evaluation
                p = model.probabilities(u[: 8 * SR])
                rows["utterances"].append({"note": path.name, "utt": j, "true": c, "pred": labels[int(np.argmax(p))]})
            print(f"  {path.name}: {y.size / SR:5.1f} s, speech {speech:5.1f} s | "
                  + " | ".join(f"{name} -> {rows[name][-1]['pred']} ({rows[name][-1]['windows']} win)"
                               for name, _, _ in conditions), flush=True)
            i += 1
    res = {name: summarise(r, labels) for name, r in rows.items()}
    first = rows["vad"]
    doc = {
        "what": "long synthetic voice notes: note-level accuracy and share predicted neutral, with and without VAD",
        "command": "python benchmarks/vad_notes.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k not in ("home", "out")},
        "model": {"name": card["model"], "recipe": card["recipe"], "weights": card["weights"],
                  "run_ua": card["accuracy"].get("ua"), "protocol": card["protocol"]["name"],
                  "training_data": {n: d.get("origin") for n, d in (card["data"]["corpora"] or {}).items()}},
        "notes": {"count": len(first), "seconds_total": round(sum(r["seconds"] for r in first), 1),
                  "speech_share_truth": round(sum(r["speech_s_truth"] for r in first)
                                              / sum(r["seconds"] for r in first), 3),
                  "speech_share_vad": round(sum(r["speech_s_vad"] or 0 for r in first)
                                            / sum(r["seconds"] for r in first), 3)},
        "conditions": [{"name": n, "vad": v, "window_s": w, "hop_s": w} for n, v, w in conditions],
        "labels": list(labels),
        "results": res, "per_note": {n: rows[n] for n, _, _ in conditions},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vad_notes.json").write_text(json.dumps(doc, indent=2))
    (out / "vad_notes.md").write_text(markdown(doc))
    print()
    print(markdown(doc))
    return 0


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def markdown(doc: dict) -> str:
    r, m, n = doc["results"], doc["model"], doc["notes"]
    ua = m["run_ua"] or {}
    lines = [
        "# VAD on long voice notes: note-level accuracy and the neutral bias",
        "",
        f"Reproduce: `{doc['command'].strip()}` (seeded; {doc['created']}).",
        "",
        f"Model: {m['name']} {m['recipe']}, weights {m['weights']}, trained on {m['training_data']} "
        f"({m['protocol']} protocol, test UA {_pct(ua.get('mean'))} on single utterances of training speakers). "
        f"Notes: {n['count']} ({len(doc['labels'])} classes x {doc['settings']['notes_per_class']}), "
        f"{n['seconds_total'] / 60:.1f} min in all, speech {100 * n['speech_share_truth']:.0f} % of the time "
        f"(VAD kept {100 * n['speech_share_vad']:.0f} %), held-out synthetic speakers, one emotion per note, "
        "pauses of background noise. Note = mean of window probabilities; hop = window.",
        "",
        "| condition | window | notes | note accuracy (= UA) | notes predicted neutral "
        "| non-neutral notes predicted neutral | windows | windows predicted neutral |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in doc["conditions"]:
        s = r[c["name"]]
        name = "with VAD" if c["vad"] else "without VAD (--no-vad)"
        lines.append(f"| {name} | {c['window_s']:g} s | {s['items']} | {_pct(s['accuracy'])} | "
                     f"{_pct(s['share_predicted_neutral'])} | {_pct(s['share_non_neutral_predicted_neutral'])} | "
                     f"{s['windows']} | {_pct(s['share_windows_neutral'])} |")
    u = r["utterances"]
    lines.append(f"| each utterance alone | - | {u['items']} utt. | {_pct(u['accuracy'])} (UA {_pct(u['ua'])}) | "
                 f"{_pct(u['share_predicted_neutral'])} | {_pct(u['share_non_neutral_predicted_neutral'])} | - | - |")
    lines += ["", "Confusion (rows true, columns predicted: " + ", ".join(doc["labels"]) + "):", ""]
    for c in doc["conditions"]:
        lines.append(f"- {c['name']}: {r[c['name']]['confusion']}")
    lines.append(f"- utterances: {r['utterances']['confusion']}")
    lines += ["", "Synthetic speech and a random-init backbone: this measures what VAD does to the "
                  "pipeline's note-level decisions, not what a pretrained model does on real voice notes.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
