"""Progress for steps that take long but say nothing while they run: an artefact build, timing.

A quantiser, an exporter or a compiler is one library call that can take minutes (int4-fast on
DistilHuBERT: 251 s), and a person watching a silent terminal cannot tell work from a hang. So
:func:`step` says when such a step starts, then every :data:`EVERY` seconds from a background
thread how long it has been going, then how it ended, through the ``serbench`` logger (the
standard library's ``logging``, at INFO).

Nothing is shown unless someone asked: the command line shows it on stderr (not with ``--quiet``
or ``--json``), and the API functions that take ``progress=`` show it while they run with it
true (:func:`shown`). Without a listener :func:`step` starts no thread.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import contextmanager

LOG = logging.getLogger("serbench")
EVERY = 5.0   # seconds between "still going" lines: well inside the 10 s a person should wait in silence


@contextmanager
def step(what: str, every: float = EVERY):
    """``what ...`` now, ``what: 15 s so far`` every ``every`` seconds, ``what: done in 32 s`` (or
    ``failed after``) at the end."""
    if not LOG.isEnabledFor(logging.INFO):
        yield
        return
    t0 = time.perf_counter()
    LOG.info("%s ...", what)
    stop = threading.Event()

    def beat():
        while not stop.wait(every):
            LOG.info("%s: %.0f s so far", what, time.perf_counter() - t0)

    thread = threading.Thread(target=beat, name="serbench-progress", daemon=True)
    thread.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        thread.join()
        LOG.info("%s: %s %.0f s", what, "done in" if ok else "failed after", time.perf_counter() - t0)


def wanted(progress: bool | None) -> bool:
    """An API call's ``progress=``: None (the default) means "when stderr is a terminal"."""
    return sys.stderr.isatty() if progress is None else bool(progress)


@contextmanager
def shown(on: bool = True, stream=None):
    """Within the block, :func:`step`'s lines go to ``stream`` (default stderr), when ``on`` (once:
    inside another ``shown``, e.g. an API call made by a command, nothing is added)."""
    if not on or LOG.handlers:
        yield
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = LOG.level
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    try:
        yield
    finally:
        LOG.removeHandler(handler)
        LOG.setLevel(level)
