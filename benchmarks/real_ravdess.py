"""serbench's eGeMAPS baseline on real RAVDESS, checked against an independent computation.

    python benchmarks/real_ravdess.py [PATH] [--home DIR] [--json out.json]

PATH defaults to ``../shared/data/ravdess-16k`` (the real corpus; never needed by the tests). For
each split {kfold-random, speaker-kfold, leave-one-speaker-out} x label map {4-class calm as
neutral, 4-class without calm, 8-class}, it runs ``serbench run --model egemaps`` (the entry's
default head) and, beside it, an independent computation on **the same folds**: openSMILE
eGeMAPSv02 functionals on the raw files -> StandardScaler -> LogisticRegression (scikit-learn
defaults, C = 1), fitted on train + validation, scored on test. That side shares nothing with
serbench but the fold membership (no serbench audio, cache or head code), so a gap between the two
columns is a serbench bug or a serbench choice, not noise in the data.

Prints serbench UA, independent UA and their difference per cell (the target: within 2 points),
the leakage gap (random minus speaker-independent UA) per label map, and how long eGeMAPS
extraction took and how many embeddings each cell computed (a second protocol over the same files
should compute none). Runs in its own SERBENCH_HOME (``--home``; default a fresh temporary
folder, so the first extraction is really timed).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
SPLITS = ("kfold-random", "speaker-kfold", "leave-one-speaker-out")
LABEL_MAPS = ("ravdess-4class", "ravdess-4class-nocalm", "ravdess-8class")
TOLERANCE = 0.02


def independent_features(files: list[str]) -> dict[str, np.ndarray]:
    """eGeMAPSv02 functionals of each file as openSMILE reads it (no serbench code involved)."""
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    frame = smile.process_files(files)
    return {str(f): row for f, row in zip(frame.index.get_level_values("file"), frame.to_numpy(np.float64))}


def independent_ua(folds, table, feats: dict[str, np.ndarray]) -> float:
    """Mean over folds of the test UA of StandardScaler + LogisticRegression fitted on train + val."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def xy(keys):
        rows = table.loc[list(keys)]
        return np.stack([feats[p] for p in rows["path"]]), rows["label"].to_numpy()

    uas = []
    for fold in folds:
        X, y = xy(fold.train + fold.val)
        Xs, ys = xy(fold.test)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X, y)
        uas.append(balanced_accuracy_score(ys, model.predict(Xs)))
    return float(np.mean(uas))


def count_embeddings(home: Path) -> int:
    root = home / "cache" / "embeddings"
    return sum(1 for _ in root.rglob("*.npy")) if root.is_dir() else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", default=str(ROOT.parent / "shared" / "data" / "ravdess-16k"))
    ap.add_argument("--home", help="SERBENCH_HOME for this benchmark (default: a fresh temporary folder)")
    ap.add_argument("--head", help="serbench head (default: the egemaps entry's)")
    ap.add_argument("--splits", default=",".join(SPLITS))
    ap.add_argument("--label-maps", default=",".join(LABEL_MAPS))
    ap.add_argument("--json", help="also write the table to this JSON file")
    args = ap.parse_args(argv)
    data = Path(args.path).resolve()
    if not (data / "Actor_01").is_dir():
        print(f"{data}: not a RAVDESS folder (no Actor_01/); give the corpus path", file=sys.stderr)
        return 2
    home = Path(args.home or tempfile.mkdtemp(prefix="serbench-real-ravdess-"))

    from serbench import fmt, paths
    from serbench.runner import Runner, RunSpec

    feats, rows, t_start = None, [], time.perf_counter()
    for label_map in args.label_maps.split(","):
        for split in args.splits.split(","):
            spec = RunSpec(model="egemaps", protocol=split, corpus="ravdess", data={"ravdess": data},
                           label_maps={"ravdess": label_map}, head=args.head, measure=False)
            before, t0 = count_embeddings(home), time.perf_counter()
            with paths.using_home(home):   # the benchmark's own caches and store; the user's are untouched
                runner = Runner(spec, store_path=home / "results.sqlite", progress=False, log=lambda *_: None)
                result = runner.run()[0]
            seconds, computed = time.perf_counter() - t0, count_embeddings(home) - before
            if feats is None:
                t1 = time.perf_counter()
                feats = independent_features(sorted(str(p) for p in data.rglob("*") if p.suffix in (".wav", ".flac")))
                print(f"independent eGeMAPS of {len(feats)} files: {time.perf_counter() - t1:.0f} s", flush=True)
            ours, theirs = result.summary["ua"]["mean"], independent_ua(runner.folds, runner.table, feats)
            rows.append({"label_map": label_map, "split": split, "folds": len(runner.folds),
                         "utterances": len(runner.table), "head": runner.head_name,
                         "serbench_ua": ours, "serbench_ua_std": result.summary["ua"]["std"],
                         "independent_ua": theirs, "difference": ours - theirs,
                         "seconds": seconds, "embeddings_computed": computed, "run_id": result.run_id})
            print(f"{label_map:22s} {split:22s} serbench {100 * ours:5.1f}  independent {100 * theirs:5.1f}  "
                  f"diff {100 * (ours - theirs):+5.1f}  ({seconds:.0f} s, {computed} embeddings computed)", flush=True)

    print()
    print(f"serbench egemaps (head {rows[0]['head']}) vs eGeMAPS -> StandardScaler -> LogisticRegression on "
          f"the same folds; real RAVDESS at {data}")
    print(tabulate([[r["label_map"], r["split"], r["folds"], r["utterances"],
                     fmt.mean_std(r["serbench_ua"], r["serbench_ua_std"]),
                     f"{100 * r['independent_ua']:.1f}", f"{100 * r['difference']:+.1f}",
                     "ok" if abs(r["difference"]) <= TOLERANCE else "OFF"] for r in rows],
                   headers=["label map", "split", "folds", "utts", "serbench UA %", "independent UA %",
                            "diff (points)", f"within {100 * TOLERANCE:.0f}"], disable_numparse=True))
    gaps = []
    for label_map in dict.fromkeys(r["label_map"] for r in rows):
        by = {r["split"]: r for r in rows if r["label_map"] == label_map}
        if "kfold-random" in by:
            for si in ("speaker-kfold", "leave-one-speaker-out"):
                if si in by:
                    gaps.append([label_map, f"kfold-random - {si}",
                                 f"{100 * (by['kfold-random']['serbench_ua'] - by[si]['serbench_ua']):+.1f}",
                                 f"{100 * (by['kfold-random']['independent_ua'] - by[si]['independent_ua']):+.1f}"])
    if gaps:
        print()
        print(tabulate(gaps, headers=["label map", "leakage gap", "serbench (points)", "independent (points)"],
                       disable_numparse=True))
    off = [r for r in rows if abs(r["difference"]) > TOLERANCE]
    print(f"\n{len(rows) - len(off)}/{len(rows)} cells within {100 * TOLERANCE:.0f} points; "
          f"total {time.perf_counter() - t_start:.0f} s; SERBENCH_HOME {home}")
    if args.json:
        Path(args.json).write_text(json.dumps({"data": str(data), "rows": rows}, indent=2))
    return 0 if not off else 1


if __name__ == "__main__":
    sys.exit(main())
