"""The artefact cache: a (backbone, recipe) pair built once into a folder, and found again.

An artefact is a folder under ``SERBENCH_HOME/artefacts/`` holding the model file(s) and an
``artefact.json`` that records everything it came from. Its name ends in a hash of everything that
changes it (model entry, recipe content, weights provenance, calibration utterance ids, library
versions), so a cached artefact is reused exactly when rebuilding would give the same thing, and
any change builds a new one. Folders are written under a temporary name and renamed into place,
so an interrupted build never leaves a half artefact that looks finished. ``artefact.json`` also
records each file's size and sha256, and :func:`load` checks them: a cached artefact damaged later
(a file cut short, overwritten, deleted; the metadata itself cut short) is a :class:`DamagedArtefact`
naming the file, which :func:`build` answers by building it again, with a ``rebuilt:`` note.

What a recipe's method does is not known here: :func:`build` asks the method table
(:mod:`serbench.artefacts.methods`) for the method's build function and artefact format.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from serbench import atomic, backbones, paths, progress
from serbench.artefacts.methods import Method, find
from serbench.entries import ModelEntry, RecipeEntry
from serbench.errors import SerbenchError
from serbench.provenance import package_versions
from serbench.runtime import features

FORMAT_VERSION = 3  # 2: the first conv block exported folded (serbench.artefacts.first_conv); 3: model kinds own their input (Whisper inc-int8 captured with a dynamic frame axis)
# the libraries whose versions change an artefact's bytes: recorded in its metadata, part of its cache key
LIBRARIES = ("torch", "transformers", "onnx", "onnxruntime", "neural-compressor", "opensmile")
META = "artefact.json"


class DamagedArtefact(SerbenchError):
    """A cached artefact folder whose files are not what its ``artefact.json`` recorded."""


@dataclass
class Artefact:
    """A built artefact: where it is, how big, and what it was built from."""

    path: Path
    model: str
    recipe: str
    format: str  # the method's (serbench.artefacts.methods.Method.format): "onnx" | "inc-pt2e"
    file: str | None
    size_mb: float
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}

    @property
    def method(self) -> Method:
        """The compression method that built it, as its recorded recipe names it."""
        recipe = self.provenance.get("recipe_entry", {})
        return find(recipe.get("backend"), recipe.get("method"))

    @property
    def frontend(self) -> dict:
        """What its graph is fed (:mod:`serbench.runtime.features`); artefacts built before the
        model kinds declared it are all waveform-fed."""
        return self.provenance.get("frontend") or dict(features.WAVEFORM)


def wave_id(wave: np.ndarray) -> str:
    """A content id for a calibration clip given without a name."""
    return "sha256:" + hashlib.sha256(np.ascontiguousarray(wave, dtype=np.float32).tobytes()).hexdigest()[:16]


def fit(wave: np.ndarray, n: int) -> np.ndarray:
    """``wave`` as float32 of exactly ``n`` samples: cut, or zero-padded at the end."""
    wave = np.asarray(wave, dtype=np.float32)[:n]
    return np.pad(wave, (0, n - wave.size)) if wave.size < n else wave


def artefact_key(model_entry: ModelEntry, recipe: RecipeEntry, weights: dict,
                 calibration_ids: list[str]) -> str:
    """Hash of everything that changes the artefact's bytes."""
    payload = {"format": FORMAT_VERSION, "model": model_entry.content, "recipe": recipe.content,
               "weights": {k: v for k, v in weights.items() if k != "label"},
               "calibration_ids": list(calibration_ids), "versions": package_versions(LIBRARIES)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def folder(model_entry: ModelEntry, recipe: RecipeEntry, key: str) -> Path:
    """Where the artefact with cache key ``key`` (:func:`artefact_key`) is, or will be, cached."""
    return paths.home() / "artefacts" / f"{model_entry.name}--{recipe.name}--{key}"


def folder_size_mb(path: Path) -> float:
    """Bytes on disk of an artefact's files (external-data files included, our metadata not), /1e6."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and p.name != META) / 1e6


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def inventory(path: Path) -> dict[str, dict]:
    """``{relative path: {"bytes", "sha256"}}`` of an artefact's files (our metadata not)."""
    return {p.relative_to(path).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(Path(path).rglob("*")) if p.is_file() and p.name != META}


def damage(path: Path, files: dict | None, main: str | None) -> str | None:
    """What is wrong with an artefact folder's files against their record, or None. Artefacts
    built before the record existed (``files`` None) are only checked for their main file."""
    if files is None:
        if main and not ((path / main).is_file() and (path / main).stat().st_size):
            return f"its model file {main} is missing or empty"
        return None
    for rel, want in files.items():
        p = path / rel
        if not p.is_file():
            return f"{rel} is missing"
        size = p.stat().st_size
        if size != want["bytes"]:
            return f"{rel} holds {size} bytes where {META} recorded {want['bytes']} (cut short or overwritten)"
        if _sha256(p) != want["sha256"]:
            return f"{rel} has the recorded size but not the recorded content (sha256 differs)"
    return None


def load(path: str | Path) -> Artefact:
    """Open an artefact folder: its metadata, with its files checked against their record
    (:func:`damage`); a damaged one is a :class:`DamagedArtefact` saying what is wrong."""
    path = Path(path)
    if not (path / META).is_file():
        raise SerbenchError(f"{path}: not an artefact folder (no {META})")
    try:
        meta = json.loads((path / META).read_text())
    except OSError as exc:
        raise SerbenchError(f"{path}: not an artefact folder (cannot read {META}: {exc})") from exc
    except ValueError as exc:
        raise DamagedArtefact(f"{path}: damaged artefact: its {META} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or not {"model", "recipe", "format", "file", "size_mb"} <= set(meta):
        raise DamagedArtefact(f"{path}: damaged artefact: its {META} lacks the model, recipe, format, file "
                              "or size_mb field")
    files = meta.pop("files", None)
    problem = damage(path, files, meta.get("file"))
    if problem:
        raise DamagedArtefact(f"{path}: damaged artefact: {problem}")
    try:
        return Artefact(**{**meta, "path": path})
    except TypeError as exc:
        raise DamagedArtefact(f"{path}: damaged artefact: {META} does not describe an artefact ({exc})") from exc


def calibration_clips(recipe: RecipeEntry, calibration, calibration_ids) -> tuple[list[np.ndarray], list[str]]:
    """The clips and ids a recipe will use (capped by its ``max_calibration_clips``)."""
    if not recipe.calibration:
        return [], []
    if not calibration:
        raise SerbenchError(f"recipe {recipe.name!r} ({recipe.path}) is calibrated: pass calibration "
                            "audio (training utterances only) and their ids")
    ids = list(calibration_ids) if calibration_ids is not None else [wave_id(w) for w in calibration]
    if len(ids) != len(calibration):
        raise SerbenchError(f"{len(calibration)} calibration clips but {len(ids)} calibration ids")
    cap = int(recipe.options.get("max_calibration_clips", len(ids)))
    return [np.asarray(w, dtype=np.float32) for w in calibration[:cap]], ids[:cap]


def build(model_entry: ModelEntry, recipe: RecipeEntry, weights="hub",
          calibration: list[np.ndarray] | None = None, calibration_ids: list[str] | None = None,
          *, force: bool = False) -> Artefact:
    """Build (or reuse from the cache) the artefact of ``model_entry`` compressed by ``recipe``.

    ``weights`` is a weights spec (``hub`` | path | ``random[:SEED]``) or an already built
    ``(model, provenance)`` pair from :func:`serbench.backbones.build` (saves rebuilding it).
    Calibration audio is used only by calibrated recipes; the ids of the clips actually used are
    recorded in the artefact's provenance and are part of its cache key. A weight-free model has
    no artefact: its encoder is used as built (:func:`serbench.backbones.encoder`).
    """
    backbones.check_recipe(model_entry, recipe)
    if model_entry.weight_free:
        raise SerbenchError(f"model {model_entry.name!r} is weight-free: it has no artefact to build; its "
                            "encoder is used as built (serbench.backbones.build and .encoder)")
    if isinstance(weights, tuple):
        model, prov = weights
    else:
        model, prov = None, backbones.provenance(model_entry, weights)
    method = find(recipe.backend, recipe.method)
    clips, ids = calibration_clips(recipe, calibration, calibration_ids)
    key = artefact_key(model_entry, recipe, prov, ids)
    final = folder(model_entry, recipe, key)
    if final.exists() and not force:
        try:
            return load(final)
        except SerbenchError as exc:   # damaged since it was built: built again, and said so
            print(f"rebuilt: {exc}", file=sys.stderr)
    if model is None:
        model, prov = backbones.build(model_entry, weights)
    # Built in a temporary folder renamed into place: a killed or failed build (a full disk, say)
    # leaves no half-written artefact and no temporary folder, and says what could not be written.
    with atomic.folder(final, f"artefact {final.name}", replace=True) as tmp, \
            progress.step(f"{model_entry.name}: building the {recipe.name} artefact"):
        file, extra = method.build(model_entry, recipe, model, clips, tmp)
        meta = {"model": model_entry.name, "recipe": recipe.name, "format": method.format, "file": file,
                "size_mb": round(folder_size_mb(tmp), 3), "files": inventory(tmp),
                "provenance": {"key": key, "weights": prov,
                               "model_entry": model_entry.content, "recipe_entry": recipe.content,
                               "frontend": backbones.frontend(model_entry),
                               "calibration_ids": ids, "versions": package_versions(LIBRARIES), **extra}}
        (tmp / META).write_text(json.dumps(meta, indent=2, default=str))
    return load(final)
