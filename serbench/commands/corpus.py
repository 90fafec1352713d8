"""``serbench corpus NAME PATH``: read a corpus in its distributed layout and summarise it."""
from __future__ import annotations

from tabulate import tabulate

from serbench import corpora


def register(sub) -> None:
    p = sub.add_parser("corpus", help="summarise a corpus folder (utterances per label/speaker/session)")
    p.add_argument("name", choices=sorted(corpora.RECIPES), help="which recipe reads the folder")
    p.add_argument("path", help="the corpus folder (or the CSV, for 'manifest')")
    p.add_argument("--label-map", help="label map name or YAML path (default: the corpus's 4-class map)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    manifest = corpora.prepare(args.name, args.path, label_map=args.label_map,
                               progress=not (args.quiet or args.json))
    if args.json:
        print(manifest.to_json())
        return 0
    s = manifest.summary()
    print(f"{s['corpus']} at {s['root']}  (label map: {s['label_map']})")
    print(f"files: {s['files']}   usable utterances: {s['utterances']}   speakers: {s['speakers']}   "
          f"sessions: {s['sessions']}   duration: {s['duration_hours'] * 60:.1f} min")
    print(tabulate(sorted(s["labels"].items()), headers=["label", "utterances"]))
    dropped = corpora.dropped_text(args.name, manifest)
    if dropped:
        print(dropped)
    print(tabulate(sorted(s["per_speaker"].items()), headers=["speaker", "utterances"]))
    if s["per_session"]:
        print(tabulate(sorted(s["per_session"].items()), headers=["session", "utterances"]))
    for warning in s["warnings"]:
        print(f"warning: {warning}")
    print(f"skipped: {s['skipped']}")
    for item in s["skipped_files"]:
        print(f"  {item['path']}: {item['reason']}")
    return 0
