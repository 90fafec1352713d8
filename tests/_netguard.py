"""A network-denying harness: Python code run in a network namespace of its own, with no interface
but a downed loopback (``unshare -n``), under ``strace``, which records every attempt to reach an
internet address (``connect``/``sendto``/``sendmsg`` on AF_INET/AF_INET6: a DNS lookup is one).

Native code is seen as well as Python's (a socket guard in Python would miss onnxruntime's
uploader, which lives in its C++ library), and nothing can leave the machine: in that namespace
every attempt fails with ENETUNREACH. Needs ``strace`` and ``unshare -n`` (root, or unprivileged
user namespaces via ``unshare -rn``); :func:`unavailable` says why not where they are missing.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

INET = ("sa_family=AF_INET,", "sa_family=AF_INET6,")


@functools.lru_cache(maxsize=1)
def _unshare() -> list[str] | None:
    for cmd in (["unshare", "-n"], ["unshare", "-rn"]):
        try:
            if subprocess.run(cmd + ["true"], capture_output=True, timeout=20).returncode == 0:
                return cmd
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def unavailable() -> str | None:
    """Why the harness cannot run here, or None."""
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install strace)"
    if _unshare() is None:
        return "cannot make a network namespace (unshare -n / -rn refused)"
    return None


def inet_attempts(jobs: dict[str, tuple[str, dict]], timeout: float = 240) -> dict[str, list[str]]:
    """Run each ``name: (python code, environment)`` at once, each in its own network namespace
    under strace; ``{name: the strace lines of its attempts to reach an inet address}``. A job
    that exits non-zero raises, with its stderr."""
    out, procs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (code, env) in jobs.items():
            log = Path(tmp) / f"{name}.strace"
            cmd = _unshare() + ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg",
                                "-o", str(log), sys.executable, "-c", code]
            procs[name] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                            env=env), log)
        for name, (proc, log) in procs.items():
            _, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise AssertionError(f"{name} exited {proc.returncode}: {err[-3000:]}")
            lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
            out[name] = [ln for ln in lines if any(f in ln for f in INET)]
    return out


# onnxruntime's telemetry stays quiet where these say a CI system runs (CI=true silenced it, measured;
# the others are named in its library), so a child that kept them would prove nothing about a
# user's machine: the control would make no lookup and the test would skip
CI_MARKERS = ("CI", "CONTINUOUS_INTEGRATION", "BUILD_NUMBER", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL",
              "TF_BUILD", "CIRCLECI", "BUILDKITE", "TEAMCITY_VERSION", "CODEBUILD_BUILD_ID", "BITBUCKET_BUILD_NUMBER")


def environment(**extra) -> dict:
    """This process's environment without ``ORT_DISABLE_TELEMETRY`` (which importing serbench sets
    here) and without :data:`CI_MARKERS`, so that each child starts as a user's fresh process
    would, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY" and k not in CI_MARKERS}
    env.update(extra)
    return env
