"""Shared fixtures: the tiny synthetic corpora, written once per test session."""
from __future__ import annotations

import os

import pytest

from serbench.synth import corpora as synth


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own SERBENCH_HOME and no hub access: nothing leaks between tests."""
    monkeypatch.setenv("SERBENCH_HOME", str(tmp_path / "serbench_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("SERBENCH_REGISTRY", raising=False)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> dict:
    """corpus name -> root folder of the tiny synthetic corpora (seed 0). Treat as read-only."""
    out = tmp_path_factory.mktemp("synthetic")
    return synth.write_all(out, seed=0, size="tiny", progress=False)


@pytest.fixture()
def hand(tmp_path):
    """The hand-made results store of tests/_runs.py (report, run table and statistics tests)."""
    from _runs import hand_store

    return hand_store(tmp_path)


os.environ.setdefault("TQDM_DISABLE", "1")
