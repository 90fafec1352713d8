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
