"""The one table of compression methods: what a recipe's ``backend``/``method`` pair may say and do.

A method is declared once, by the backend module that implements it (:mod:`.onnxruntime`,
:mod:`.neural_compressor`), with everything the rest of serbench asks about it: the option fields a
recipe may set (the registry validates recipe files against them), the function that builds the
artefact, the artefact's format and the encoder that opens it, whether it has an ONNX form
(``serbench export`` ships only those), whether it calibrates by default, and whether it is the
uncompressed reference every other recipe is compared with. Nothing else lists methods, so adding
one is adding one :func:`register` call beside its implementation.

This module imports nothing heavy and no backend: the backends import it to register, and
``serbench.artefacts`` (the package) imports the backends, so whoever imports any part of the
package sees every method.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from serbench.errors import SerbenchError
from serbench.schema import Field, positive

# the one option every calibrated method understands: serbench.artefacts.cache caps the clips with it
MAX_CALIBRATION_CLIPS = Field("max_calibration_clips", int, check=positive)


@dataclass(frozen=True)
class Method:
    """One compression method of one backend.

    ``build(model_entry, recipe, model, clips, out) -> (file, extra provenance)`` writes the
    artefact's model file into the folder ``out``; ``encoder(artefact, threads)`` opens it with
    ``embed(wave) -> (layers, dim)``.
    """

    backend: str
    name: str
    options: tuple[Field, ...]
    build: Callable[..., tuple[str, dict]]
    format: str                  # what the artefact folder holds: "onnx" | "inc-pt2e"
    encoder: Callable[..., object]
    onnx: bool                   # its artefact is one ONNX graph, so `serbench export` can ship it
    calibrated: bool = False     # a recipe's `calibration` when the recipe does not say
    reference: bool = False      # the uncompressed export: heads are trained on it, ratios are to it
    gpu: bool = False            # float kernels that also run on a CUDA device, used when one is visible


_METHODS: dict[tuple[str, str], Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the table (once: a second declaration of a pair is a bug)."""
    key = (method.backend, method.name)
    if key in _METHODS:
        raise ValueError(f"compression method {key} is declared twice")
    if len({f.name for f in method.options}) != len(method.options):
        raise ValueError(f"compression method {key} lists an option twice")
    _METHODS[key] = method
    return method


def backends() -> dict[str, dict[str, Method]]:
    """backend -> method name -> :class:`Method`, in declaration order."""
    out: dict[str, dict[str, Method]] = {}
    for (backend, name), method in _METHODS.items():
        out.setdefault(backend, {})[name] = method
    return out


def find(backend: str, name: str) -> Method:
    """The method a recipe names (recipes are validated at load, so a miss is an unknown pair)."""
    try:
        return _METHODS[(backend, name)]
    except KeyError:
        raise SerbenchError(f"no compression method {name!r} for backend {backend!r}") from None
