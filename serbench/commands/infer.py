"""``serbench infer MODEL_DIR AUDIO...``: emotion of (long) voice notes with an exported model."""
from __future__ import annotations


def register(sub) -> None:
    from serbench.runtime import cli

    p = sub.add_parser("infer", help="emotion of voice notes: VAD -> windows -> averaged probabilities")
    cli.add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from serbench.runtime import cli

    doc, status = cli.run(args.model_dir, args.audio, args)
    cli.print_results(doc, args)
    return status
