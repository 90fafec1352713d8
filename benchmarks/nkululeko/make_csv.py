"""Write the RAVDESS annotation CSV that nkululeko reads (stdlib only).

Columns: file (absolute path), speaker (actor id), emotion, gender,
fold5 (a fixed speaker group 0..4 for the 5-group LOGO run).
Rows are shuffled with seed 0 so that nkululeko's (unshuffled)
StratifiedKFold in the k_fold_cross run is a random utterance-level split.

usage: python make_csv.py DATA_DIR OUT_CSV
"""
import csv
import os
import random
import sys

EMO = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad",
       "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised"}


def main(data_dir, out_csv):
    rows = []
    for actor in sorted(os.listdir(data_dir)):
        adir = os.path.join(data_dir, actor)
        if not (actor.startswith("Actor_") and os.path.isdir(adir)):
            continue
        for fn in sorted(os.listdir(adir)):
            stem, ext = os.path.splitext(fn)
            if ext.lower() not in (".flac", ".wav"):
                continue
            parts = stem.split("-")  # MM-VC-EE-II-SS-RR-AA
            if len(parts) != 7 or parts[0] != "03" or parts[1] != "01":
                continue
            aid = int(parts[6])
            rows.append({
                "file": os.path.abspath(os.path.join(adir, fn)),
                "speaker": f"actor{aid:02d}",
                "emotion": EMO[parts[2]],
                "gender": "male" if aid % 2 else "female",
                # actors 1,6,11,16,21 -> 0; 2,7,12,17,22 -> 1; ... (5,5,5,5,4 actors)
                "fold5": (aid - 1) % 5,
            })
    random.Random(0).shuffle(rows)
    os.makedirs(os.path.dirname(os.path.abspath(out_csv)), exist_ok=True)
    with open(out_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} rows, {len({r['speaker'] for r in rows})} speakers -> {out_csv}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
