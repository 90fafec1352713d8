"""``serbench infer MODEL_DIR AUDIO...``: emotion of (long) voice notes with an exported model."""
from __future__ import annotations


def register(sub) -> None:
    from serbench import infer

    p = sub.add_parser("infer", help="emotion of voice notes: VAD -> windows -> averaged probabilities")
    infer.add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from serbench import infer

    doc, status = infer.run(args.model_dir, args.audio, args)
    infer.print_results(doc, args)
    return status
