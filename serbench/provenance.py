"""Where a result came from: serbench version, git commit, package versions, machine.

Every run row in the results store, every artefact's metadata (its library versions are part of
its cache key), every latency record and model card state these facts; they are read here once,
so two records of the same machine or checkout can never disagree on how it was asked.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from serbench import __version__

PACKAGES = ("torch", "transformers", "onnxruntime", "onnx", "optimum", "optimum-onnx", "neural-compressor",
            "numpy", "scipy", "scikit-learn", "pandas", "soundfile", "soxr", "librosa")


def provenance(**run_facts) -> dict:
    """Where a result came from: serbench version, git commit, package versions, machine.

    ``run_facts`` (weights source, manifest hashes, protocol and recipe content, seed ...) are
    merged in, so one dict answers "what produced this number".
    """
    commit, dirty = git_state()
    return {
        "serbench": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": _torch_threads(),
        **run_facts,
    }


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """``{name: installed version or None}`` for each distribution in ``names``."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the checkout serbench runs from; ``(None, None)`` when installed
    from a wheel or git is unavailable. Dirty means tracked files differ from the commit."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None, None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


@functools.lru_cache(maxsize=1)
def cpu_model() -> str | None:
    """The CPU's marketing name: /proc/cpuinfo (Linux), sysctl (macOS), else py-cpuinfo if
    installed, else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, timeout=5).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import cpuinfo  # py-cpuinfo: optional, slow (it may spawn a subprocess)

        return cpuinfo.get_cpu_info().get("brand_raw") or None
    except Exception:  # noqa: BLE001 - optional helper; any failure means "unknown"
        return platform.processor() or None


def _torch_threads() -> int | None:
    """torch's intra-op thread count (``None`` without torch): it changes timings and, for some
    kernels, the last bits of a result."""
    try:
        import torch
    except ImportError:
        return None
    return int(torch.get_num_threads())


def hardware(device: str) -> str:
    """What ran a computation, for the record: ``"cpu: <model>"`` or ``"cuda: <GPU name>"``."""
    if device == "cpu":
        return f"cpu: {cpu_model() or platform.machine()}"
    try:
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unknown GPU"
    except Exception:  # torch without CUDA: onnxruntime-gpu alone found the device
        name = "unknown GPU"
    return f"{device}: {name}"
