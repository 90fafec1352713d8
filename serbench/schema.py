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

The same :class:`Field` declares the options of a Python function or a command
(:mod:`serbench.options`): :func:`options` checks keyword arguments with the same rules, and its
messages read ``option '{name}' (--flag): {why}``, whether the value came from the command line
or from Python. Every YAML file serbench reads goes through :func:`loads` (:func:`read`): a key
given twice is an error naming the file, key and lines, and aliases are refused (see there).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from serbench.errors import SerbenchError

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               dict: "a mapping", list: "a list", tuple: "a tuple", os.PathLike: "a path"}


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
    ``flag``: the command-line option that sets it, named in :func:`options`' messages.
    A number (``float``) must be finite: ``inf`` and ``nan`` are refused wherever they come from.
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
    flag: str | None = None


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


def _fail(path: Path | str | None, spec: Field, name: str, why: str) -> SerbenchError:
    """A file's field (``{path}: field 'x': why``), or, without a path, a function's or a command's
    option (``option 'x' (--x): why``)."""
    if path is not None:
        return error(path, name, why)
    return SerbenchError(f"option {name!r}" + (f" ({spec.flag})" if spec.flag else "") + f": {why}")


def value(data: dict, spec: Field, path: Path | str | None, prefix: str = ""):
    """The checked value of one field of ``data`` (its default when absent); ``path`` ``None``:
    ``data`` are keyword arguments (:func:`options`)."""
    name = prefix + spec.name
    fail = lambda n, why: _fail(path, spec, n, why)
    present = spec.name in data and (data[spec.name] is not None or spec.nullable)
    if not present:
        if spec.required:
            raise fail(name, "required" if spec.name not in data else "required, got null")
        if spec.fields is not None and not any(f.required for f in spec.fields):
            return validate({}, spec.fields, path, f"{name}.")  # absent: every nested default
        return spec.default.copy() if isinstance(spec.default, (dict, list)) else spec.default
    val = data[spec.name]
    if val is None:  # nullable
        return None
    if spec.type is not None and not _is(val, spec.type):
        raise fail(name, f"must be {_want(spec.type)}, got {val!r}")
    if spec.items is not None:
        for i, item in enumerate(val):
            if not _is(item, spec.items):
                raise fail(f"{name}[{i}]", f"must be {_want(spec.items)}, got {item!r}")
            if isinstance(item, float) and not math.isfinite(item):
                raise fail(f"{name}[{i}]", f"must be a finite number, got {item!r}")
    if isinstance(val, float) and not math.isfinite(val):
        raise fail(name, f"must be a finite number, got {val!r}")
    if _as_float(spec.type) and isinstance(val, int) and not isinstance(val, bool):
        val = float(val)
    if spec.choices is not None and val not in spec.choices:
        raise fail(name, f"must be one of {', '.join(map(str, spec.choices))}, got {val!r}"
                   + suggest(val, spec.choices))
    if spec.fields is not None:
        val = validate(val, spec.fields, path, f"{name}.")
    if spec.check is not None:
        why = spec.check(val)
        if why:
            raise fail(name, why)
    return val


def validate(data: dict, fields: Iterable[Field], path: Path | str | None, prefix: str = "") -> dict:
    """Check ``data`` against ``fields``: unknown keys, types, required fields, choices, checks.

    Returns ``{field name: value}`` for every field, absent ones at their defaults (so the caller
    never needs ``.get``). ``prefix`` names the mapping's place in the file (``"split."``).
    ``path`` ``None``: ``data`` are options, not a file's fields (what :func:`options` passes).
    """
    fields = tuple(fields)
    what = "field" if path is not None else "option"
    if not isinstance(data, dict):
        where = f"{what} '{prefix.rstrip('.')}': " if prefix else ""
        head = f"{path}: " if path is not None else ""
        raise SerbenchError(f"{head}{where}expected a mapping of {what}s, got {type(data).__name__}")
    known = {f.name: f for f in fields}
    for key in data:
        if key not in known:
            inside = f" in '{prefix.rstrip('.')}'" if prefix else ""
            why = f"unknown {what}{inside} (known: {', '.join(sorted(known))})" + suggest(key, known)
            if path is None:
                raise SerbenchError(f"option {prefix + str(key)!r}: {why}")
            raise error(path, f"{prefix}{key}", why)
    return {f.name: value(data, f, path, prefix) for f in fields}


def options(given: dict, fields: Iterable[Field]) -> dict:
    """Keyword arguments (of an API function, or a command's parsed options) checked against
    ``fields`` with the file rules (unknown names with a did-you-mean, strict types, ranges):
    ``{name: checked value}`` for those given and not ``None`` (``None`` keeps the default, unless
    the field is ``nullable``). One check for the command line and for Python, so both read
    ``option 'epochs' (--epochs): must be positive, got 0``."""
    fields = tuple(fields)
    checked = validate(given, fields, None)
    return {f.name: checked[f.name] for f in fields if f.name in given and (given[f.name] is not None or f.nullable)}


def config(obj, fields: Iterable[Field]) -> None:
    """Check a config dataclass's values against its declared ``fields`` (call it from
    ``__post_init__``): a :class:`~serbench.finetune.FinetuneConfig` made in Python, from a head
    file or from the command line is held to the same ranges."""
    validate(dataclasses.asdict(obj), fields, type(obj).__name__)


def config_fields(cls, *fields: Field) -> tuple[Field, ...]:
    """``fields`` (one per field of the dataclass ``cls``, each with its type and check) with the
    defaults taken from ``cls``, so a config's defaults are written once, in the dataclass."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    names = [f.name for f in fields]
    if sorted(names) != sorted(defaults):
        raise TypeError(f"{cls.__name__}: fields declared {sorted(names)} differ from {sorted(defaults)}")
    return tuple(dataclasses.replace(f, default=defaults[f.name]) for f in fields)


# -- reading YAML: one loader for every registry, protocol, head, grid and label-map file ---------


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, stricter in two ways.

    A key given twice in one mapping is an error (PyYAML keeps the last silently). Aliases
    (``*name``) are refused outright, not merely counted: an alias costs nothing to parse but
    expands when the data is walked or hashed, so nine nested aliases of nine ("billion laughs")
    exhaust memory, and any count small enough to stop that is smaller than a useful one. serbench's
    data files are short and written by hand, none uses an anchor, and writing a value out twice is
    the price of reading a file as it looks.
    """

    path = ""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise SerbenchError(f"{self.path}: line {mark.line + 1}: YAML aliases (*name) are not allowed in "
                                "serbench's data files (an alias bomb can exhaust memory); write the value out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise SerbenchError(f"{self.path}: line {line}: key {key!r} given twice (first on line "
                                            f"{seen[key]}); the later value would silently win")
                    seen[key] = line
                except TypeError:   # an unhashable key: PyYAML names it below
                    continue
        return super().construct_mapping(node, deep)


def loads(text: str, path: Path | str):
    """Parse one YAML document ``text`` read from ``path`` (named in errors) with the strict
    loader (:class:`_Loader`); any YAML error names the file."""
    loader = _Loader(text)
    loader.path = loader.name = str(path)   # name: what PyYAML's own messages call the stream
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise SerbenchError(f"{path}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()


def read(path: Path | str) -> dict:
    """A YAML file's top-level mapping (:func:`loads`); invalid YAML or anything but a mapping is an error."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SerbenchError(f"{path}: cannot be read: {exc}") from exc
    data = loads(text, path)
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


def at_least(lo: float) -> Callable[[Any], str | None]:
    """A check for ``v >= lo``."""
    return lambda v: None if v >= lo else f"must be at least {lo}, got {v!r}"


SEED_MAX = 2**32 - 1   # numpy's legacy seeding, torch's and every seeded generator serbench uses take [0, 2**32)


def seed(v) -> str | None:
    """A random seed: an integer in [0, 2**32 - 1] (numpy refuses anything else)."""
    return None if 0 <= v <= SEED_MAX else f"must be in [0, {SEED_MAX}] (a random seed), got {v!r}"
