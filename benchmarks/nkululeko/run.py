#!/usr/bin/env python3
"""Run nkululeko (eGeMAPSv02 functionals + standard scaling + linear SVM) on RAVDESS.

Cells: 3 label maps x 3 evaluation schemes (LOSO over 24 actors, 5 speaker groups, random
5-fold over utterances). Everything generated (CSV, ini files, nkululeko's experiment folders,
logs) goes to --work (default: $TMPDIR/serbench-nkululeko), outside the repository; only
results.json is written next to this script.

Run it with the python of a venv that has nkululeko (see run.sh). Needs only the stdlib here;
nkululeko itself is started as `python -c <seeded wrapper> CONFIG` in a subprocess.
"""
import argparse
import json
import os
import re
import shutil
import string
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import make_csv  # noqa: E402

LABEL_MAPS = {
    # calm merged into neutral (nkululeko's mapping drops every label it does not list)
    "4c_calm_as_neutral": dict(
        labels="['angry', 'happy', 'neutral', 'sad']",
        data_extra="ravdess.mapping = {'calm, neutral': 'neutral', 'angry': 'angry', "
                   "'happy': 'happy', 'sad': 'sad'}"),
    "4c_no_calm": dict(labels="['angry', 'happy', 'neutral', 'sad']", data_extra=""),
    "8c": dict(labels="['angry', 'calm', 'disgust', 'fearful', 'happy', 'neutral', 'sad', "
                      "'surprised']", data_extra=""),
}
SPLITS = {
    # 24 groups for 24 speakers: nkululeko's _do_logo deals the (shuffled) speakers
    # round-robin into `logo` groups, so logo = 24 is exactly leave-one-speaker-out.
    "loso24": dict(split_strategy="speaker_split", data_extra="", model_extra="logo = 24"),
    # 5 fixed speaker groups from the CSV's fold5 column (actor-1) mod 5, renamed to the
    # `fold` column that _do_logo uses when present.
    "logo5": dict(split_strategy="speaker_split",
                  data_extra="ravdess.colnames = {'fold5': 'fold'}", model_extra="logo = 5"),
    # StratifiedKFold(5) (no shuffle) over train+test of a random 80/20 utterance split of
    # the seed-0-shuffled CSV: a random, speaker-dependent 5-fold CV.
    "kfold5_random": dict(split_strategy="random", data_extra="", model_extra="k_fold_cross = 5"),
}

WRAPPER = ("import random, sys; random.seed(int(sys.argv[2])); "
           "sys.argv = ['nkululeko', '--config', sys.argv[1]]; "
           "from nkululeko.nkululeko import main; main()")

CONF_RE = re.compile(r"UAR: ([0-9.]+), \(\+-([0-9.]+)/([0-9.]+)\), ACC: ([0-9.]+)")
FOLD_RE = re.compile(r"result for (?:speaker group|fold) (\d+): test: ([0-9.]+) UAR")


def parse(exp_dir, log_text):
    res_dir = os.path.join(exp_dir, "results", "run_0")
    out = {}
    for fn in sorted(os.listdir(res_dir)):
        if fn.endswith("_conf.txt"):
            m = CONF_RE.search(open(os.path.join(res_dir, fn)).read())
            if m:
                # nkululeko prints the bootstrap interval as "(+-A/B)"; A and B are the
                # interval's two ends (not offsets), so store them sorted.
                lo, hi = sorted((float(m.group(2)), float(m.group(3))))
                out.update(uar=float(m.group(1)), uar_ci95=[lo, hi], acc=float(m.group(4)),
                           conf_file=fn)
        elif fn.endswith(".txt") and fn.startswith("ravdess_") and "_conf" not in fn:
            txt = open(os.path.join(res_dir, fn)).read().splitlines()[0]
            try:
                rpt = json.loads(txt)
                out["classification_report"] = {
                    "accuracy": rpt.get("accuracy"),
                    "macro_recall": rpt.get("macro avg", {}).get("recall"),
                    "macro_f1": rpt.get("macro avg", {}).get("f1-score"),
                    "n": rpt.get("macro avg", {}).get("support")}
            except ValueError:
                pass
    folds = [float(v) for _, v in FOLD_RE.findall(log_text)]
    out["fold_uar"] = folds
    if folds:
        out["fold_uar_mean"] = sum(folds) / len(folds)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "ravdess-16k"))
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "serbench-nkululeko"))
    ap.add_argument("--seed", type=int, default=0, help="seed for python's random inside nkululeko")
    ap.add_argument("--only", nargs="*", help="run only cells named LABELMAP/SPLIT")
    ap.add_argument("--results", default=os.path.join(HERE, "results.json"))
    a = ap.parse_args()

    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    csv_path = os.path.join(work, "ravdess.csv")
    make_csv.main(os.path.abspath(a.data), csv_path)
    tmpl = string.Template(open(os.path.join(HERE, "templates", "exp.ini")).read())
    feat_cache = os.path.join(work, "feat_cache", "ravdess_os_all.pkl")
    import nkululeko.constants as nkc  # noqa: only for the version string
    results = {"nkululeko_version": nkc.VERSION, "seed": a.seed, "cells": {}}
    t_all = time.time()
    for lm, lmv in LABEL_MAPS.items():
        for sp, spv in SPLITS.items():
            cell = f"{lm}/{sp}"
            if a.only and cell not in a.only:
                continue
            name = f"{lm}__{sp}"
            exp_dir = os.path.join(work, "exp", name)
            shutil.rmtree(exp_dir, ignore_errors=True)
            os.makedirs(os.path.join(exp_dir, "store"))
            if os.path.isfile(feat_cache):  # nkululeko reuses <store>/ravdess_os_all.pkl if present
                shutil.copy(feat_cache, os.path.join(exp_dir, "store"))
            ini = tmpl.substitute(
                root=os.path.join(work, "exp", ""), name=name, csv=csv_path,
                split_strategy=spv["split_strategy"], labels=lmv["labels"],
                data_extra="\n".join(x for x in (lmv["data_extra"], spv["data_extra"]) if x),
                model_extra=spv["model_extra"])
            ini_path = os.path.join(work, "ini", name + ".ini")
            os.makedirs(os.path.dirname(ini_path), exist_ok=True)
            open(ini_path, "w").write(ini)
            t0 = time.time()
            p = subprocess.run([sys.executable, "-c", WRAPPER, ini_path, str(a.seed)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            dt = time.time() - t0
            log = p.stdout
            os.makedirs(os.path.join(work, "logs"), exist_ok=True)
            open(os.path.join(work, "logs", name + ".log"), "w").write(log)
            if p.returncode != 0 or "DONE" not in log:
                print(f"{cell}: nkululeko FAILED (rc {p.returncode}), see {work}/logs/{name}.log")
                results["cells"][cell] = {"error": p.returncode, "seconds": round(dt, 1)}
                continue
            made = os.path.join(exp_dir, "store", "ravdess_os_all.pkl")
            if not os.path.isfile(feat_cache) and os.path.isfile(made):
                os.makedirs(os.path.dirname(feat_cache), exist_ok=True)
                shutil.copy(made, feat_cache)
            r = parse(exp_dir, log)
            r["seconds"] = round(dt, 1)
            r["ini"] = ini_path
            results["cells"][cell] = r
            print(f"{cell:32s} UAR {r.get('uar', float('nan')):.3f} "
                  f"CI {r.get('uar_ci95')}  "
                  f"ACC {r.get('acc', float('nan')):.3f}  folds {len(r['fold_uar'])} "
                  f"mean-of-folds UAR {r.get('fold_uar_mean', float('nan')):.3f}  {dt:.0f}s", flush=True)
    results["total_seconds"] = round(time.time() - t_all, 1)
    with open(a.results, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    print(f"total {results['total_seconds']:.0f}s; wrote {a.results}")


if __name__ == "__main__":
    main()
