"""The sources of a run's corpora: where each corpus a protocol names lives on this machine, a
real folder or the built-in synthetic version (named "sources", not "datasets": it loads nothing).

A protocol names corpora by role (``iemocap``, ``crema-d``, ...); their folders come from, in
order: ``--data NAME=PATH`` on the command line, ``$SERBENCH_DATA_<NAME>`` (``-`` as ``_``, e.g.
``SERBENCH_DATA_CREMA_D``), or a ``serbench.toml`` (``[data]`` table) in the working directory or in
``$SERBENCH_HOME``. ``--synthetic`` instead uses the built-in synthetic corpora, written on first use
into ``$SERBENCH_HOME/synthetic/``, and every result is tagged synthetic.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from serbench import corpora, paths, schema
from serbench.errors import SerbenchError
from serbench.manifest import Manifest
from serbench.synth import corpora as synth


@dataclass(frozen=True)
class Source:
    """One corpus's folder and whether it is synthetic (stored with every result)."""

    corpus: str
    path: Path
    synthetic: bool
    origin: str        # "--data", "env SERBENCH_DATA_X", "serbench.toml at ...", "synthetic seed=.. size=.."


def env_name(corpus: str) -> str:
    return "SERBENCH_DATA_" + corpus.upper().replace("-", "_")


def parse_data_args(items: list[str] | None) -> dict[str, Path]:
    """``["iemocap=/data/IEMOCAP_full_release", ...]`` -> ``{"iemocap": Path(...)}``."""
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SerbenchError(f"--data wants NAME=PATH, got {item!r}")
        out[name.strip()] = Path(path.strip()).expanduser()
    return out


def _toml_entries() -> dict[str, tuple[Path, str]]:
    for cfg in (Path.cwd() / "serbench.toml", paths.home() / "serbench.toml"):
        if cfg.is_file():
            try:
                data = tomllib.loads(cfg.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise SerbenchError(f"{cfg}: not valid TOML: {exc}") from exc
            table = data.get("data", {})
            if not isinstance(table, dict):
                raise SerbenchError(f"{cfg}: [data] must be a table of NAME = \"PATH\"")
            # every value a folder path (a string): 3 or true is an error naming the file and key
            schema.validate(table, [schema.Field(k, str, required=True, check=schema.non_empty) for k in table],
                            cfg, "data.")
            return {k: ((cfg.parent / Path(v).expanduser()), f"serbench.toml at {cfg}") for k, v in table.items()}
    return {}


def resolve(names: tuple[str, ...], data: dict[str, Path] | None = None, synthetic: bool = False,
            size: str = "small", seed: int = 0, progress: bool = True) -> dict[str, Source]:
    """Find every corpus in ``names``; a missing one is an error naming the three ways to give it."""
    if synthetic:
        out = paths.home() / "synthetic" / f"{size}-seed{seed}"
        unknown = [n for n in names if n not in synth.WRITERS]
        if unknown:
            raise SerbenchError(f"no synthetic version of {', '.join(unknown)}; "
                                f"synthetic corpora: {', '.join(synth.CORPORA)}")
        roots = synth.write_all(out, seed=seed, size=size, corpora=names, progress=progress)
        return {n: Source(n, roots[n], True, f"synthetic seed={seed} size={size}") for n in names}
    data = data or {}
    toml = _toml_entries()
    found, missing = {}, []
    for name in names:
        if name in data:
            found[name] = Source(name, data[name], False, "--data")
        elif os.environ.get(env_name(name)):
            found[name] = Source(name, Path(os.environ[env_name(name)]).expanduser(), False,
                                 f"env {env_name(name)}")
        elif name in toml:
            found[name] = Source(name, toml[name][0], False, toml[name][1])
        else:
            missing.append(name)
    if missing:
        ways = "; ".join(f"--data {n}=PATH, or ${env_name(n)}, or [data] {n} = \"PATH\" in serbench.toml"
                         for n in missing)
        raise SerbenchError(f"no folder given for corpus {', '.join(missing)}: give {ways} "
                            "(or use --synthetic for the built-in synthetic corpora)")
    return found


def manifests(sources: dict[str, Source], label_maps: dict[str, str] | None = None,
              progress: bool = True) -> dict[str, Manifest]:
    """Run each corpus's recipe on its folder (or read its manifest CSV,
    :func:`serbench.corpora.prepare_source`), with the protocol's label map where it sets one."""
    label_maps = label_maps or {}
    return {n: corpora.prepare_source(n, s.path, label_map=label_maps.get(n), progress=progress)
            for n, s in sources.items()}
