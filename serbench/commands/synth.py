"""``serbench synth OUT``: write the built-in synthetic corpora in their real layouts."""
from __future__ import annotations

from serbench import corpora
from serbench.synth import corpora as synth


def register(sub) -> None:
    p = sub.add_parser("synth", help="write synthetic IEMOCAP/CREMA-D/RAVDESS/EmoDB-like corpora")
    p.add_argument("out", help="folder to write into")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", choices=sorted(synth.SIZES), default="small",
                   help="tiny: for tests; small (default): the demo; medium: closer to real sizes")
    p.add_argument("--corpora", default=",".join(synth.CORPORA),
                   help="comma-separated subset of " + ",".join(synth.CORPORA))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from serbench import options

    options.check((options.SEED,), {"seed": args.seed})
    names = tuple(n.strip() for n in args.corpora.split(",") if n.strip())
    roots = synth.write_all(args.out, seed=args.seed, size=args.size, corpora=names,
                            progress=not args.quiet)
    for name, root in roots.items():
        m = corpora.prepare(name, root, progress=False)
        labels = ", ".join(f"{k} {v}" for k, v in m.summary()["labels"].items())
        print(f"{name:8s} {root}  {len(m)} utterances ({labels}), {m.frame['speaker'].nunique()} speakers")
    print(f"read them with: serbench corpus NAME PATH   (e.g. serbench corpus iemocap {roots.get('iemocap', '')})")
    return 0
