"""A model folder's own infer.py run as a user without serbench would: in a fresh interpreter with
torch, transformers, librosa, scipy, soxr, silero_vad, scikit-learn and serbench unimportable."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLOCKED = ["torch", "librosa", "scipy", "soxr", "serbench", "silero_vad", "transformers", "sklearn"]


def standalone_infer(folder: Path, args: list[str]) -> subprocess.CompletedProcess:
    code = ("import sys, runpy\n"
            f"for m in {BLOCKED!r}: sys.modules[m] = None\n"
            f"sys.argv = ['infer.py', *{list(args)!r}]\n"
            f"runpy.run_path({str(Path(folder) / 'infer.py')!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
