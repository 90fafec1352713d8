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
        "cpu_isa": cpu_isa(),
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


#: the CPU flags that decide which SIMD kernels oneDNN (torch), onnxruntime's MLAS and the BLAS run:
#: the same model and recipe give other speeds, and in the last bits other numbers, on another set
ISA_FLAGS = ("avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",       # x86-64 (/proc/cpuinfo names)
             "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")             # aarch64 ("neon" is asimd)


@functools.lru_cache(maxsize=1)
def cpu_isa() -> dict:
    """The instruction sets that select kernels here: CPU vendor and model, which of
    :data:`ISA_FLAGS` the CPU has, and the ISA oneDNN itself chose (it honours a
    ``ONEDNN_MAX_CPU_ISA`` cap, recorded too). onnxruntime does not say which MLAS kernels it
    picked; it picks them by these same flags."""
    try:
        vendor, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        vendor, flags = None, set()
    if sys.platform == "darwin":
        vendor = vendor or _sysctl("machdep.cpu.vendor") or "Apple"
        flags.update(f.lower().replace(".", "_") for f in (_sysctl("machdep.cpu.features") or "").split())
        flags.update(f.lower().replace(".", "_") for f in (_sysctl("machdep.cpu.leaf7_features") or "").split())
    return {"vendor": vendor, "model": cpu_model(), "arch": platform.machine(),
            "flags": [f for f in ISA_FLAGS if f in flags], "onednn_isa": onednn_isa(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")}


def parse_cpuinfo(text: str) -> tuple[str | None, set[str]]:
    """``(vendor, flags)`` from /proc/cpuinfo's text: x86's ``vendor_id`` and ``flags`` lines,
    aarch64's ``CPU implementer`` and ``Features`` lines."""
    vendor, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("vendor_id", "cpu implementer") and vendor is None:
            vendor = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return vendor, flags


def isa_summary(isa: dict | None = None) -> str:
    """One line for output and tables: ``"AMD EPYC; avx2 avx512f ... ; oneDNN: Intel AVX2 (capped)"``."""
    isa = isa or cpu_isa()
    parts = [isa.get("model") or isa.get("arch") or "unknown CPU", " ".join(isa.get("flags") or []) or "no listed ISA flags"]
    if isa.get("onednn_isa"):
        cap = f", capped by ONEDNN_MAX_CPU_ISA={isa['onednn_max_cpu_isa']}" if isa.get("onednn_max_cpu_isa") else ""
        parts.append(f"oneDNN: {isa['onednn_isa']}{cap}")
    return "; ".join(parts)


#: the kernel-selecting features, widest first: the first one a CPU has names its class of kernels
ISA_RANK = ("amx_int8", "avx512_fp16", "avx512_bf16", "avx512_vnni", "avx512f", "avx_vnni", "avx2",
            "sme", "sve2", "sve", "i8mm", "asimddp", "asimd")


def isa_label(isa: dict | None) -> str | None:
    """A short name of the machine a speed was measured on, for tables and grouping:
    ``"AMD EPYC, avx512_bf16"`` (the CPU and the widest of :data:`ISA_RANK` it has), plus oneDNN's
    ISA where a ``ONEDNN_MAX_CPU_ISA`` cap changed it. Speeds under two labels are not comparable."""
    if not isa:
        return None
    flags = set(isa.get("flags") or [])
    top = next((f for f in ISA_RANK if f in flags), "baseline ISA")
    label = f"{isa.get('model') or isa.get('arch') or 'unknown CPU'}, {top}"
    if isa.get("onednn_max_cpu_isa"):
        label += f", oneDNN capped to {isa['onednn_max_cpu_isa']}"
    return label


@functools.lru_cache(maxsize=1)
def onednn_isa() -> str | None:
    """The ISA oneDNN dispatches to in this process, as oneDNN's verbose header states it
    (``"Intel AVX-512 with Intel DL Boost and bfloat16 support"``, ``"Intel AVX2"`` ...), or None
    without torch or where oneDNN prints no header (verbose mode already used in this process).

    oneDNN has no query for it that torch exposes; its verbose mode prints it once, on stdout, at
    the first primitive it runs with verbose on, so that is caught here on the file descriptor.
    """
    try:
        import torch
    except ImportError:
        return None
    if not (hasattr(torch.backends, "mkldnn") and torch.backends.mkldnn.is_available()):
        return None
    import tempfile

    sys.stdout.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            saved = os.dup(1)
        except OSError:  # no stdout to borrow
            return None
        try:
            os.dup2(sink.fileno(), 1)
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                torch.ops.mkldnn._linear_pointwise(torch.ones(2, 8), torch.ones(8, 8), None, "none", [], "")
        except Exception:  # noqa: BLE001 - a torch without this op: the ISA is simply not known
            return None
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode(errors="replace")
    for line in text.splitlines():
        if ",cpu,isa:" in line:
            return line.split(",cpu,isa:", 1)[1].strip()
    return None


def _sysctl(name: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _torch_threads() -> int | None:
    """torch's intra-op thread count (``None`` without torch): it changes timings and, for some
    kernels, the last bits of a result."""
    try:
        import torch
    except ImportError:
        return None
    return int(torch.get_num_threads())


def hardware(device: str) -> str:
    """What ran a computation, for the record: ``"cpu: <model>; <ISA flags>; oneDNN: <its ISA>"``
    (:func:`isa_summary`) or ``"cuda: <GPU name>"``."""
    if device == "cpu":
        return f"cpu: {isa_summary()}"
    try:
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unknown GPU"
    except Exception:  # torch without CUDA: onnxruntime-gpu alone found the device
        name = "unknown GPU"
    return f"{device}: {name}"
