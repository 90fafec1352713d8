"""Where serbench keeps things, and where its data files live.

Everything serbench writes (results store, embedding and artefact caches, generated synthetic
corpora) lives under one folder, ``SERBENCH_HOME``, so a user can see, move or delete it whole.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from serbench.errors import SerbenchError


_HOME: ContextVar[Path | None] = ContextVar("serbench_home", default=None)


@contextmanager
def using_home(folder: str | Path | None):
    """Inside the block, :func:`home` is ``folder`` (``None``: unchanged). What the API's ``home=``
    does, so a notebook or a benchmark need not set environment variables mid-process."""
    token = _HOME.set(Path(folder).expanduser()) if folder is not None else None
    try:
        yield
    finally:
        if token is not None:
            _HOME.reset(token)


def home() -> Path:
    """The ``home=`` of the API call in progress, else ``$SERBENCH_HOME``, else
    ``$XDG_CACHE_HOME/serbench``, else ``~/.cache/serbench``."""
    override = _HOME.get()
    if override is not None:
        return override
    env = os.environ.get("SERBENCH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "serbench"


def data_root() -> Path:
    """The folder holding ``registry/`` (models, recipes, label maps) and protocols.

    In a source checkout (editable install) that is the repository root, so adding an entry is
    adding a file there; a wheel carries a copy inside the package as ``serbench/_data``.
    """
    packaged = Path(__file__).resolve().parent / "_data"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent


def registry_dirs(kind: str) -> list[Path]:
    """Folders searched for registry entries of ``kind`` (``models``, ``recipes``, ``labelmaps``).

    The built-in folder first, then ``$SERBENCH_HOME/registry/<kind>`` and every folder in
    ``$SERBENCH_REGISTRY`` (``os.pathsep``-separated, each holding ``<kind>/`` sub-folders), so users
    can add entries without touching the installed package. Later folders override earlier ones.
    """
    dirs = [data_root() / "registry" / kind, home() / "registry" / kind]
    for extra in filter(None, os.environ.get("SERBENCH_REGISTRY", "").split(os.pathsep)):
        dirs.append(Path(extra).expanduser() / kind)
    return [d for d in dirs if d.is_dir()]


def yaml_files(folders: list[Path]) -> dict[str, Path]:
    """Entry names (file stems) to ``.yaml``/``.yml`` files in ``folders``; later folders override.

    ``x.yaml`` beside ``x.yml`` in one folder is an error naming both: either could be the entry
    meant, and taking one silently would run the other's settings."""
    found: dict[str, Path] = {}
    for folder in folders:
        here: dict[str, Path] = {}
        for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
            if path.stem in here:
                raise SerbenchError(f"{here[path.stem]} and {path} both define entry {path.stem!r}; "
                                    "remove or rename one")
            here[path.stem] = path
        found.update(here)
    return found


def find_yaml(name_or_path: str | Path, files: dict[str, Path], what: str) -> Path:
    """A YAML file given by path, or the entry ``name`` among ``files``; an unknown name is an
    error listing the known ones (one rule for models, recipes, label maps and protocols)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    name = str(name_or_path)
    if name not in files:
        known = ", ".join(sorted(files)) or "none"
        raise SerbenchError(f"unknown {what} {name!r}; known: {known} (or give a path to a .yaml file)")
    return files[name]
