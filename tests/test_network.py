"""Zero network: nothing serbench runs may contact another host. onnxruntime >= 1.29 has native
telemetry that makes DNS lookups some seconds after a session opens, unless
ORT_DISABLE_TELEMETRY=1 was set before it was imported (serbench.runtime sets it). Checked under a
network-denying harness (tests/_netguard.py), with a bare onnxruntime process as the control that
shows the harness sees such lookups at all."""
from __future__ import annotations

import subprocess
import sys

import pytest
from _netguard import environment, inet_attempts, unavailable

OPEN_S = 12  # the lookups came ~9 s after a session opened (onnxruntime 1.32)

GRAPH = """
import numpy as np, onnx
from onnx import TensorProto, helper
g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]); m.ir_version = 9
MODEL = m.SerializeToString()
"""
KEEP_OPEN = f"""
import time
t = time.time()
while time.time() - t < {OPEN_S}:
    s.run(None, {{"x": np.ones(1, np.float32)}}); time.sleep(0.5)
"""


@pytest.mark.slow
def test_serbench_sessions_make_no_network_attempt_where_a_bare_onnxruntime_does():
    why = unavailable()
    if why:
        pytest.skip(f"network-denying harness unavailable: {why}")
    bare = GRAPH + ("import onnxruntime as ort\nort.disable_telemetry_events()\n"
                    "s = ort.InferenceSession(MODEL, providers=['CPUExecutionProvider'])\n") + KEEP_OPEN
    ours = ("import serbench.runtime as rt\n" + GRAPH +
            "import tempfile, pathlib\np = pathlib.Path(tempfile.mkdtemp()) / 'm.onnx'; p.write_bytes(MODEL)\n"
            "s = rt.session(p, 1)\n" + KEEP_OPEN)
    got = inet_attempts({"bare onnxruntime": (bare, environment()), "serbench": (ours, environment())})
    if not got["bare onnxruntime"]:
        pytest.skip("this onnxruntime made no network attempt even without the opt-out: nothing to tell apart")
    assert got["serbench"] == [], got["serbench"][:5]


def test_an_onnxruntime_imported_before_serbench_is_warned_about():
    """The opt-out only works before onnxruntime is imported; later, the user is told."""
    code = GRAPH + ("import onnxruntime, warnings, tempfile, pathlib\nimport serbench.runtime as rt\n"
                    "p = pathlib.Path(tempfile.mkdtemp()) / 'm.onnx'; p.write_bytes(MODEL)\n"
                    "warnings.simplefilter('always')\nrt.session(p, 1)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment(),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ORT_DISABLE_TELEMETRY=1 before importing onnxruntime" in done.stderr
    quiet = subprocess.run([sys.executable, "-c", code.replace("import onnxruntime, ", "import ")],
                           capture_output=True, text=True, env=environment(), timeout=120)
    assert quiet.returncode == 0 and "ORT_DISABLE_TELEMETRY" not in quiet.stderr, quiet.stderr
