import json

import numpy as np

from serbench.provenance import provenance


def test_provenance_collects_versions_machine_and_facts():
    p = provenance(seed=7, weights_source="hub:facebook/wav2vec2-base@abc")
    assert p["serbench"] and p["python"] and p["platform"]
    assert p["packages"]["numpy"] == np.__version__ and p["packages"]["scikit-learn"]
    assert "onnxruntime" in p["packages"] and p["threads"] >= 1
    assert p["seed"] == 7 and p["weights_source"].startswith("hub:")
    assert p["git_commit"] is None or len(p["git_commit"]) == 40
    json.dumps(p)  # storable as is


XEON_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp asimddp sve i8mm bf16
CPU implementer\t: 0x41
"""


def test_the_isa_record_names_the_kernel_selecting_flags_of_x86_and_arm():
    from serbench import provenance as p

    vendor, flags = p.parse_cpuinfo(XEON_AMX)
    assert vendor == "GenuineIntel" and {"amx_int8", "avx512_vnni", "avx2"} <= flags
    isa = {"model": "Intel Xeon", "flags": [f for f in p.ISA_FLAGS if f in flags]}
    assert p.isa_label(isa) == "Intel Xeon, amx_int8"
    assert p.isa_label({**isa, "onednn_max_cpu_isa": "AVX512_CORE_VNNI"}).endswith("oneDNN capped to AVX512_CORE_VNNI")
    vendor, flags = p.parse_cpuinfo(GRAVITON)
    assert vendor == "0x41" and {"asimd", "asimddp", "sve", "i8mm"} <= flags
    assert p.isa_label({"model": "Graviton", "flags": [f for f in p.ISA_FLAGS if f in flags]}) == "Graviton, sve"


def test_every_record_of_this_machine_carries_its_isa_and_onednn_names_its_own():
    """provenance (runs, artefacts), measure.machine (bench, run measurements) and the per-fold
    hardware string all carry the flags; oneDNN's ISA is its own statement, and follows a cap."""
    import os
    import platform
    import subprocess
    import sys

    from serbench import measure
    from serbench import provenance as p

    isa = p.cpu_isa()
    assert provenance()["cpu_isa"] == isa and measure.machine()["isa"] == isa
    assert set(isa["flags"]) <= set(p.ISA_FLAGS)
    assert " ".join(isa["flags"]) in p.hardware("cpu")
    if isa["onednn_isa"]:
        assert f"oneDNN: {isa['onednn_isa']}" in p.hardware("cpu")
    if platform.machine() in ("x86_64", "AMD64") and isa["onednn_isa"] and "avx2" in isa["flags"]:
        code = "from serbench import provenance as p; print(p.cpu_isa()['onednn_isa']); print(p.isa_summary())"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
        assert done.returncode == 0, done.stderr
        onednn, summary = done.stdout.strip().splitlines()[-2:]
        assert onednn == "Intel AVX2" and "capped by ONEDNN_MAX_CPU_ISA=AVX2" in summary
