"""Compressed backbones as cached artefact folders: built once per (model, recipe, weights,
calibration, library versions), opened as encoders.

* :mod:`.methods`: the one table of compression methods (backend, name, recipe options, build
  function, artefact format, encoder, ONNX form, reference); the registry validates recipe files
  against it.
* :mod:`.onnxruntime`, :mod:`.neural_compressor`: one module per backend, each registering its
  methods beside their implementation (as optimum-benchmark keeps one folder per backend).
  :mod:`.ort_nbits` adds the onnxruntime backend's n-bit method (4-bit MatMuls, int8 convs).
* :mod:`.cache`: the artefact folder, its cache key, :func:`~.cache.build` and :func:`~.cache.load`.
* :mod:`.encoders`: :func:`~.encoders.open_encoder`, for any artefact.

Importing the package imports both backends, so whoever uses any part of it sees every method.
"""
from serbench.artefacts import neural_compressor, onnxruntime, ort_nbits  # noqa: F401 - they register their methods
