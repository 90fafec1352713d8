"""Side check (not nkululeko): how much does nkululeko's one-off scaler matter?

nkululeko fits its StandardScaler once, on its 20-speaker "train" split, before the logo /
k_fold_cross loop, so under LOSO the held-out speaker was (for 20 of 24 folds) in the scaler's
fit. This refits the same model (SVC(kernel="linear", C=1), as nkululeko builds it, minus the
probability calibration, which predict() does not use) on nkululeko's own cached eGeMAPSv02
features with the scaler fitted (a) inside each LOSO fold on the training speakers only and
(b) on nkululeko's 20 train speakers, as nkululeko does.

usage: $NKVENV/bin/python check_scaling.py [WORK_DIR]   (after run.sh)
"""
import os
import sys
import tempfile

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, accuracy_score
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

work = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.gettempdir(), "serbench-nkululeko")
feats = pd.read_pickle(os.path.join(work, "feat_cache", "ravdess_os_all.pkl"))
feats.index = feats.index.get_level_values(0)
meta = pd.read_csv(os.path.join(work, "ravdess.csv")).set_index("file")
NK_TEST = {"actor15", "actor20", "actor21", "actor22"}  # nkululeko's speaker_split test speakers (seed 0)
MAPS = {"4c_calm_as_neutral": {"calm": "neutral", "neutral": "neutral", "angry": "angry", "happy": "happy", "sad": "sad"},
        "4c_no_calm": {k: k for k in ("neutral", "angry", "happy", "sad")},
        "8c": None}
for name, mp in MAPS.items():
    m = meta.copy()
    if mp:
        m["y"] = m.emotion.map(mp)
        m = m.dropna(subset=["y"])
    else:
        m["y"] = m.emotion
    X = feats.loc[m.index].to_numpy()
    y, g = m.y.to_numpy(), m.speaker.to_numpy()
    glob = StandardScaler().fit(X[~np.isin(g, list(NK_TEST))])
    pred_fold, pred_glob = np.empty_like(y), np.empty_like(y)
    for tr, te in LeaveOneGroupOut().split(X, y, g):
        sc = StandardScaler().fit(X[tr])
        pred_fold[te] = SVC(kernel="linear", C=1.0).fit(sc.transform(X[tr]), y[tr]).predict(sc.transform(X[te]))
        pred_glob[te] = SVC(kernel="linear", C=1.0).fit(glob.transform(X[tr]), y[tr]).predict(glob.transform(X[te]))
    print(f"{name:20s} LOSO UA per-fold scaler {balanced_accuracy_score(y, pred_fold):.3f} "
          f"(acc {accuracy_score(y, pred_fold):.3f}) | nkululeko-style scaler "
          f"{balanced_accuracy_score(y, pred_glob):.3f} (acc {accuracy_score(y, pred_glob):.3f})")
