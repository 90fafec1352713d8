"""One validator for every YAML data file serbench reads (models, recipes, label maps, protocols,
heads): a declarative list of :class:`Field` per kind, checked by :func:`validate`.

Every key is checked, so a typo fails at once instead of being silently ignored: an unknown key is
an error naming the file and the field, with a suggestion when a known field is a close match
(``normalise`` -> ``normalize``). Types are strict (``true`` is not an integer, ``"yes"`` is not a
boolean), required fields must be present, and ``choices``/``check`` catch bad values at load
rather than deep inside an export. Every message reads ``{path}: field '{name}': {why}``; fields of
a nested mapping are named with a dotted prefix (``split.kind``, ``options.weight_type``).

Typical use (what a registry kind needs)::

    FIELDS = (Field("name", str), Field("dim", int, required=True, check=positive), ...)
    values = schema.load_entry(path, FIELDS)   # read, check 'name' = file name, validate
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from serbench.errors import SerbenchError

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               dict: "a mapping", list: "a list"}


@dataclass(frozen=True)
class Field:
    """One key of a data file.

    ``type``: a type or tuple of types (``None``: anything). ``bool`` matches only where listed
    (``True`` is no integer here); ``float`` accepts integers too and returns a float.
    ``required``: the key must be present (and not null, unless ``nullable``).
    ``nullable``: an explicit ``null`` is a value (kept as ``None``); otherwise null means absent.
    ``default``: the value when absent (copied if a dict or list).
    ``choices``: the allowed values. ``items``: the type every element of a list must have.
    ``fields``: the fields of a nested mapping, validated the same way (prefix ``name.``).
    ``check``: ``value -> None`` when fine, else the reason, e.g. ``"must be positive"``.
    """

    name: str
    type: type | tuple[type, ...] | None = None
    required: bool = False
    default: Any = None
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None
    nullable: bool = False
    items: type | tuple[type, ...] | None = None
    fields: tuple[Field, ...] | None = None


def error(path: Path | str, name: str, why: str) -> SerbenchError:
    """The one message format: ``{path}: field '{name}': {why}``."""
    return SerbenchError(f"{path}: field '{name}': {why}")


def suggest(word: str, known: Iterable) -> str:
    """`` did you mean 'x'?`` when ``word`` is close to one of ``known`` (case-insensitive), else ``""``."""
    known = [str(k) for k in known]
    lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(str(word).lower(), list(lower), n=1, cutoff=0.6)
    return f"; did you mean {lower[close[0]]!r}?" if close else ""


def _is(value, types) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if float in types:
        types = types + (int,)
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _as_float(types) -> bool:
    """Whether integers given for this type are returned as floats (float listed, int not)."""
    types = types if isinstance(types, tuple) else (types,)
    return float in types and int not in types


def _want(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def value(data: dict, spec: Field, path: Path | str, prefix: str = ""):
    """The checked value of one field of ``data`` (its default when absent)."""
    name = prefix + spec.name
    present = spec.name in data and (data[spec.name] is not None or spec.nullable)
    if not present:
        if spec.required:
            raise error(path, name, "required" if spec.name not in data else "required, got null")
        if spec.fields is not None and not any(f.required for f in spec.fields):
            return validate({}, spec.fields, path, f"{name}.")  # absent: every nested default
        return spec.default.copy() if isinstance(spec.default, (dict, list)) else spec.default
    val = data[spec.name]
    if val is None:  # nullable
        return None
    if spec.type is not None and not _is(val, spec.type):
        raise error(path, name, f"must be {_want(spec.type)}, got {val!r}")
    if spec.items is not None:
        for i, item in enumerate(val):
            if not _is(item, spec.items):
                raise error(path, f"{name}[{i}]", f"must be {_want(spec.items)}, got {item!r}")
    if _as_float(spec.type) and isinstance(val, int) and not isinstance(val, bool):
        val = float(val)
    if spec.choices is not None and val not in spec.choices:
        raise error(path, name, f"must be one of {', '.join(map(str, spec.choices))}, got {val!r}"
                    + suggest(val, spec.choices))
    if spec.fields is not None:
        val = validate(val, spec.fields, path, f"{name}.")
    if spec.check is not None:
        why = spec.check(val)
        if why:
            raise error(path, name, why)
    return val


def validate(data: dict, fields: Iterable[Field], path: Path | str, prefix: str = "") -> dict:
    """Check ``data`` against ``fields``: unknown keys, types, required fields, choices, checks.

    Returns ``{field name: value}`` for every field, absent ones at their defaults (so the caller
    never needs ``.get``). ``prefix`` names the mapping's place in the file (``"split."``).
    """
    fields = tuple(fields)
    if not isinstance(data, dict):
        where = f"field '{prefix.rstrip('.')}': " if prefix else ""
        raise SerbenchError(f"{path}: {where}expected a mapping of fields, got {type(data).__name__}")
    known = {f.name: f for f in fields}
    for key in data:
        if key not in known:
            inside = f" in '{prefix.rstrip('.')}'" if prefix else ""
            raise error(path, f"{prefix}{key}", f"unknown field{inside} (known: {', '.join(sorted(known))})"
                        + suggest(key, known))
    return {f.name: value(data, f, path, prefix) for f in fields}


def read(path: Path | str) -> dict:
    """A YAML file's top-level mapping; invalid YAML or anything but a mapping is an error."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SerbenchError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SerbenchError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    return data


def check_name(data: dict, path: Path | str) -> str:
    """The entry's name: its file's stem, which a ``name`` field, if given, must equal."""
    path = Path(path)
    name = data.get("name", path.stem)
    if name != path.stem:
        raise SerbenchError(f"{path}: field 'name' is {name!r} but must match the file name "
                            f"{path.stem!r}, so that the entry can be found by name")
    return name


def load_entry(path: Path | str, fields: Iterable[Field]) -> tuple[dict, dict]:
    """Read a registry entry, check its name and validate it: ``(raw content, values)``.

    The raw content (with ``name`` filled in) is what caches hash; ``values`` has every field,
    defaults included. ``fields`` must include ``Field("name", str)``.
    """
    data = read(path)
    data["name"] = check_name(data, path)
    return data, validate(data, fields, path)


# -- reusable checks (value -> reason or None) ------------------------------------------------


def positive(v) -> str | None:
    return None if v > 0 else f"must be positive, got {v!r}"


def non_empty(v) -> str | None:
    return None if len(v) > 0 and (not isinstance(v, str) or v.strip()) else "must not be empty"


def within(lo: float, hi: float, lo_open: bool = True, hi_open: bool = False) -> Callable[[Any], str | None]:
    """A check for ``lo < v <= hi`` (by default; ``lo_open``/``hi_open`` say which ends are excluded)."""
    def check(v):
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        return None if ok else f"must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}, got {v!r}"
    return check
