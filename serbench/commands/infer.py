"""``serbench infer MODEL_DIR AUDIO...``: emotion of (long) voice notes with an exported model."""
from __future__ import annotations


def register(sub) -> None:
    from serbench.runtime import cli

    p = sub.add_parser("infer", help="emotion of voice notes: VAD -> windows -> averaged probabilities")
    cli.add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from serbench import options
    from serbench.runtime import cli

    options.check(options.ANALYSE, dict(model_dir=args.model_dir, files=args.audio, threads=args.threads,
                                        vad=not args.no_vad, window=args.window, hop=args.hop,
                                        min_speech=args.min_speech))   # what serbench.analyse checks
    doc, status = cli.run(args.model_dir, args.audio, args)
    cli.print_results(doc, args)
    return status
