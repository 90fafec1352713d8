"""Fidelity on real speech vs on the synthetic probe set, and where static-int8 should calibrate.

    python benchmarks/probe_data.py [RAVDESS_PATH] [--model distilhubert] [--weights random:0]

Runs ``serbench bench --recipe static-int8,dynamic-int8`` twice: once with the synthetic probe
set, once with ``--probe-data ravdess=PATH``. Each run builds static-int8 calibrated on its own
kind of clips. It then swaps them: each static-int8 artefact is also measured on the other run's
probe set. That gives the 2 x 2 table of the README ("Fidelity on your own data"). Only fidelity
is printed (latency runs are kept short; no energy or memory). Fidelity does not depend on machine
load; speed does. Artefacts are cached in SERBENCH_HOME, so a second run builds nothing.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from serbench import measure, probe_sets, registry
from serbench.artefacts import encoders
from serbench.recipe_bench import bench

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess-16k"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", nargs="?", default=str(DEFAULT), help="RAVDESS folder (default ../shared/data/ravdess-16k)")
    p.add_argument("--model", default="distilhubert")
    p.add_argument("--weights", default="random:0")
    p.add_argument("--probe", type=int, default=16)
    p.add_argument("--calibration", type=int, default=32)
    args = p.parse_args()
    spec = f"ravdess={args.path}"
    quick = {"repeats": 3, "warmup": 1, "energy": False, "rss": False, "probe": args.probe,
             "calibration": args.calibration, "log": print}
    results = {"synthetic": bench(args.model, ["static-int8", "dynamic-int8"], args.weights, **quick),
               "ravdess": bench(args.model, ["static-int8", "dynamic-int8"], args.weights, probe_data=spec, **quick)}
    entry = registry.load_model(args.model)
    sets = {"synthetic": probe_sets.synthetic(args.probe, 0),
            "ravdess": probe_sets.from_corpus(spec, entry, args.probe, 0)}
    rows = {r["recipe"]: r for r in results["synthetic"]["rows"]}
    ref = encoders.open_encoder(rows["fp32"]["artefact"])
    table = [["dynamic-int8"] + [{r["recipe"]: r for r in results[k]["rows"]}["dynamic-int8"]["fidelity"]
                                 ["centered_cosine"] for k in sets]]
    for cal in sets:   # the static-int8 artefact calibrated on `cal`, on both probe sets
        static = encoders.open_encoder({r["recipe"]: r for r in results[cal]["rows"]}["static-int8"]["artefact"])
        table.append([f"static-int8 calibrated on {cal}"]
                     + [measure.fidelity(measure.embed_all(ref, s.probe), measure.embed_all(static, s.probe))
                        ["centered_cosine"] for s in sets.values()])
    print()
    print(results["ravdess"]["probe"]["description"])
    print(tabulate(table, headers=["centred cosine to fp32"] + [f"{k} probe" for k in sets]))


if __name__ == "__main__":
    main()
