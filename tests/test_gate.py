"""`serbench gate`: baseline comparison rules, the CLI's exit codes, and the CI benchmark itself."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from serbench import gate
from serbench.cli import main
from serbench.store import Store
from _runs import write_run  # hand-made runs with known UA

ROOT = Path(__file__).resolve().parent.parent


def _entry(ua, acc_per_mb, data="SYNTHETIC", weights_kind="random"):
    return {"ua": ua, "acc_per_mb": acc_per_mb, "data": data, "weights_kind": weights_kind}


BASE = {"tiny/fp32/loso": _entry(0.30, 2.0), "tiny/dynamic-int8/loso": _entry(0.31, 3.0),
        "egemaps/fp32/loso": _entry(0.60, None, weights_kind="none")}


def test_equal_runs_pass_and_improvements_are_not_failures():
    assert gate.compare(BASE, BASE).passed
    better = {**BASE, "tiny/fp32/loso": _entry(0.35, 2.5)}
    out = gate.compare(BASE, better)
    assert out.passed
    assert {r["status"] for r in out.rows if r["entry"] == "tiny/fp32/loso"} == {"improved"}
    assert [r["status"] for r in out.rows if r["entry"] == "egemaps/fp32/loso"] == ["ok", "n/a (weight-free)"]


def test_ua_tolerance_is_absolute():
    cur = {**BASE, "tiny/fp32/loso": _entry(0.291, 2.0)}            # -0.009: within 0.01
    assert gate.compare(BASE, cur).passed
    cur = {**BASE, "tiny/fp32/loso": _entry(0.285, 2.0)}            # -0.015
    out = gate.compare(BASE, cur)
    assert out.failures == ["tiny/fp32/loso: UA 0.3000 -> 0.2850 (-0.0150, -1.50 points; tolerance 0.0100 absolute)"]
    assert gate.compare(BASE, cur, gate.Tolerance(ua=0.02)).passed


def test_acc_per_mb_tolerance_is_relative():
    cur = {**BASE, "tiny/dynamic-int8/loso": _entry(0.31, 2.94)}    # -2 %
    out = gate.compare(BASE, cur)                                   # default 1 %
    assert len(out.failures) == 1 and out.failures[0].startswith("tiny/dynamic-int8/loso: UA/MB 3 -> 2.94 (-2.00%")
    assert gate.compare(BASE, cur, gate.Tolerance(acc_per_mb=0.03)).passed
    # the same absolute drop (0.06) on a model with a small ratio is a large relative one
    small = {"m/r/p": _entry(0.5, 0.1)}
    assert not gate.compare(small, {"m/r/p": _entry(0.5, 0.04)}, gate.Tolerance(acc_per_mb=0.5)).passed


def test_missing_new_and_incomparable_entries():
    cur = {k: v for k, v in BASE.items() if k != "egemaps/fp32/loso"}
    cur["hubert/fp32/loso"] = _entry(0.7, 0.01)
    out = gate.compare(BASE, cur)
    assert out.failures == ["egemaps/fp32/loso: in the baseline but no finished run in the store"]
    assert any(r["entry"] == "hubert/fp32/loso" and r["status"].startswith("new") for r in out.rows)
    assert gate.compare(BASE, cur, allow_missing=True).passed
    real = {**BASE, "tiny/fp32/loso": _entry(0.30, 2.0, data="real")}
    out = gate.compare(BASE, real)
    assert len(out.failures) == 1 and "not comparable" in out.failures[0] and "'SYNTHETIC' -> 'real'" in out.failures[0]
    with pytest.raises(Exception, match="tolerance on ua"):
        gate.Tolerance(ua=-0.1)


@pytest.fixture()
def small_store(tmp_path) -> Path:
    path = tmp_path / "results.sqlite"
    with Store(path) as db:
        write_run(db, "tiny", "fp32", "loso", [0.3] * 4, weights="random", synthetic=True,
                  measurements={"size_mb": 0.15, "artefact": "x"})
        write_run(db, "egemaps", "fp32", "loso", [0.5] * 4, weights="none", synthetic=True,
                  measurements={"size_mb": 0, "artefact": "x"})
    return path


def test_update_then_pass_then_fail_on_a_raised_baseline(small_store, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert main(["gate", "--store", str(small_store), "--baseline", str(baseline), "--update"]) == 0
    doc = json.loads(baseline.read_text())
    assert set(doc["entries"]) == {"tiny/fp32/loso", "egemaps/fp32/loso"}
    assert doc["entries"]["tiny/fp32/loso"]["acc_per_mb"] == pytest.approx(0.3 / 0.15)
    assert doc["entries"]["egemaps/fp32/loso"]["acc_per_mb"] is None  # 0 MB: not applicable
    assert doc["entries"]["tiny/fp32/loso"]["synthetic"] is True
    assert "RANDOM-INIT" in doc["entries"]["tiny/fp32/loso"]["weights"]
    capsys.readouterr()
    assert main(["gate", "--store", str(small_store), "--baseline", str(baseline)]) == 0
    assert "gate: PASSED" in capsys.readouterr().out
    doc["entries"]["tiny/fp32/loso"]["acc_per_mb"] *= 1.10
    raised = tmp_path / "raised.json"
    raised.write_text(json.dumps(doc))
    assert main(["gate", "--store", str(small_store), "--baseline", str(raised)]) == 1
    out = capsys.readouterr().out
    assert "gate: FAILED (1)" in out
    assert re.search(r"tiny/fp32/loso: UA/MB 2\.2 -> 2 \(-9\.09%; tolerance 1\.00% relative\)", out)
    assert main(["gate", "--store", str(small_store), "--baseline", str(raised), "--tolerance", "0.1"]) == 0


def test_cli_errors_name_the_file(small_store, tmp_path, capsys):
    missing = tmp_path / "nope.json"
    assert main(["gate", "--store", str(small_store), "--baseline", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing}: no baseline file there" in err and "--update" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"entries": {"a/b/c": {"ua": 0.5,}}}')
    assert main(["gate", "--store", str(small_store), "--baseline", str(bad)]) == 2
    assert f"{bad}: not valid JSON (line 1" in capsys.readouterr().err
    bad.write_text('{"entries": {"a/b": {"ua": 0.5}}}')
    assert main(["gate", "--store", str(small_store), "--baseline", str(bad)]) == 2
    assert "not named model/recipe/protocol" in capsys.readouterr().err
    empty = tmp_path / "empty.sqlite"
    Store(empty).close()
    assert main(["gate", "--store", str(empty), "--baseline", str(bad)]) == 2
    assert "holds no runs" in capsys.readouterr().err
    assert main(["gate", "--store", str(tmp_path / "none.sqlite"), "--baseline", str(bad)]) == 2
    assert "no results store there" in capsys.readouterr().err


def _ci_commands() -> list[list[str]]:
    """The `serbench ...` commands of benchmarks/ci_gate.sh, so this test runs what CI runs."""
    text = (ROOT / "benchmarks" / "ci_gate.sh").read_text().replace("\\\n", " ")
    return [shlex.split(ln)[1:] for ln in text.splitlines() if ln.strip().startswith("serbench ")]


@pytest.mark.slow
def test_ci_benchmark_passes_the_committed_baseline_and_fails_a_raised_one(tmp_path, capsys):
    # CI runs every command of ci_gate.sh itself (minutes, for the DistilHuBERT line); here the
    # fast egemaps line is run and gated against the committed baseline's entry for it.
    *runs, gate_cmd = _ci_commands()
    assert gate_cmd[0] == "gate" and "--paired" in gate_cmd
    for args in runs:
        assert "--no-measure" in args and "--synthetic" in args  # deterministic: no timing in the gate
    args = next(a for a in runs if a[a.index("--model") + 1] == "egemaps")
    assert main(args) == 0
    committed = ROOT / "reports" / "baseline.json"
    doc = json.loads(committed.read_text())
    assert min(e["ua"] for e in doc["entries"].values()) >= 0.5       # every entry twice chance (4 classes)
    assert any(n.split("/")[1] != "fp32" and e["acc_per_mb"] for n, e in doc["entries"].items())  # an int8 backbone
    capsys.readouterr()
    assert main(["gate", "--baseline", str(committed), "--paired", "--allow-missing"]) == 0, capsys.readouterr().out
    name = "egemaps/fp32/loso"
    doc["entries"][name]["ua"] += 0.05  # as if a change had cost egemaps 5 points
    raised = tmp_path / "raised.json"
    raised.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["gate", "--baseline", str(raised), "--allow-missing"]) == 1
    out = capsys.readouterr().out
    assert f"{name}: UA" in out and "-5.00 points; tolerance 0.0100 absolute" in out


def test_baselines_that_are_not_utf8_or_well_formed_or_not_files_are_named(small_store, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert main(["gate", "--store", str(small_store), "--baseline", str(baseline), "--update"]) == 0
    text = baseline.read_text()
    capsys.readouterr()
    utf16 = tmp_path / "utf16.json"
    utf16.write_text(text, encoding="utf-16")  # what PowerShell's `>` writes
    assert main(["gate", "--store", str(small_store), "--baseline", str(utf16)]) == 2
    assert f"{utf16}: not UTF-8 text (it is UTF-16); save the baseline as UTF-8" in capsys.readouterr().err
    bom = tmp_path / "bom.json"
    bom.write_text(text, encoding="utf-8-sig")  # a UTF-8 byte-order mark is harmless
    assert main(["gate", "--store", str(small_store), "--baseline", str(bom)]) == 0
    capsys.readouterr()
    for fmt in ('"1"', "1.5", "true", "null"):
        odd = tmp_path / "fmt.json"
        odd.write_text(text.replace('"format": 1', f'"format": {fmt}'))
        assert main(["gate", "--store", str(small_store), "--baseline", str(odd)]) == 2
        assert f'{odd}: "format" must be a whole number (this serbench writes 1), not' in capsys.readouterr().err
    folder = tmp_path / "baselines"
    folder.mkdir()
    assert main(["gate", "--store", str(small_store), "--baseline", str(folder), "--update"]) == 2
    assert f"cannot write baseline {folder}: it is a folder, not a file" in capsys.readouterr().err
    assert main(["gate", "--store", str(small_store), "--baseline", str(folder)]) == 2
    assert f"{folder}: is a folder; --baseline wants a JSON file" in capsys.readouterr().err
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # no stray temporary


# -- --paired: is a drop real? --------------------------------------------------------------------


def _paired_entry(preds, ua):
    return {"ua": ua, "acc_per_mb": None, "data": "SYNTHETIC", "weights_kind": "none",
            "classes": ["angry", "happy", "neutral", "sad"], "predictions": preds}


def _run_entry(tmp_path, name, change=None):
    """egemaps on tiny synthetic LOSO (MLP head), as a gate entry; ``change`` patches the runner."""
    from serbench.runner import Runner, RunSpec

    spec = RunSpec(model="egemaps", protocol="loso", head="mlp", synthetic=True, synthetic_size="tiny",
                   measure=False, seed=(change or {}).get("seed"))
    runner = Runner(spec, store_path=tmp_path / f"{name}.sqlite", progress=False, log=lambda *a: None)
    if change and "labels" in change:
        runner._labels = change["labels"].__get__(runner)
    runner.run()
    with Store(tmp_path / f"{name}.sqlite") as db:
        return gate.current_entries(db)


def test_paired_gate_fails_a_real_regression_and_passes_another_seed(tmp_path, monkeypatch):
    import numpy as np

    from serbench.runner import Runner

    monkeypatch.setenv("SERBENCH_HOME", str(tmp_path / "home"))
    base = _run_entry(tmp_path, "base")
    real_labels = Runner._labels

    def shuffled(self, keys):            # 70 % of TRAINING labels shuffled (test labels untouched)
        labels = real_labels(self, keys)
        if any(keys is f.train for f in self.folds):
            rng = np.random.default_rng(len(keys))
            idx = rng.choice(len(labels), int(0.7 * len(labels)), replace=False)
            for i, j in zip(idx, rng.permutation(idx)):
                labels[i] = real_labels(self, keys)[j]
        return labels

    broken = _run_entry(tmp_path, "broken", {"labels": shuffled})
    reseeded = _run_entry(tmp_path, "reseeded", {"seed": 1})
    name = "egemaps/fp32/loso"
    assert broken[name]["ua"] < base[name]["ua"] - 0.1
    assert not gate.compare(base, broken, paired=True).passed
    out = gate.compare(base, reseeded, paired=True)
    assert out.passed, out.failures
    assert base[name]["predictions"][0][1].startswith("iemocap/Ses")     # speakers stored, clustered


def test_paired_gate_tells_noise_from_a_drop_and_refuses_what_it_cannot_pair():
    import numpy as np

    rng = np.random.default_rng(0)
    classes = ["angry", "happy", "neutral", "sad"]
    preds, noisy, dropped = [], [], []
    for s in range(10):
        for u in range(40):
            t = classes[rng.integers(4)]
            p = t if rng.random() < 0.7 else classes[rng.integers(4)]
            utt = f"c/s{s}u{u}"
            preds.append([utt, f"c/s{s}", t, p])
            noisy.append([utt, f"c/s{s}", t, p if rng.random() > 0.05 else classes[rng.integers(4)]])
            dropped.append([utt, f"c/s{s}", t, p if rng.random() > 0.5 else classes[(classes.index(t) + 1) % 4]])

    def ua(rows):
        from serbench import metrics
        return metrics.ua([r[2] for r in rows], [r[3] for r in rows], classes)

    base = {"m/fp32/p": _paired_entry(preds, ua(preds))}
    noise = {"m/fp32/p": _paired_entry(noisy, ua(noisy))}
    drop = {"m/fp32/p": _paired_entry(dropped, ua(dropped))}
    assert ua(noisy) < ua(preds) - 0.01                        # the point gate would fail on noise ...
    assert not gate.compare(base, noise).passed
    assert gate.compare(base, noise, paired=True).passed        # ... the paired gate does not
    out = gate.compare(base, drop, paired=True)
    assert not out.passed and "lies below" in out.failures[0]
    other = {"m/fp32/p": _paired_entry(preds[:-5], ua(preds))}   # other test utterances
    assert "different test utterances" in gate.compare(base, other, paired=True).failures[0]
    bare = {"m/fp32/p": {**base["m/fp32/p"], "predictions": None}}
    assert "no stored predictions" in gate.compare(bare, base, paired=True).failures[0]


def test_paired_gate_judges_ua_per_mb_against_the_ua_interval_and_the_exact_size():
    """Three utterances of 320 must not fail UA/MB, a model that grew without getting better must."""
    import numpy as np

    from serbench import metrics

    rng = np.random.default_rng(1)
    classes = ["angry", "happy", "neutral", "sad"]
    preds = []
    for s in range(8):
        for u in range(40):
            t = classes[rng.integers(4)]
            preds.append([f"c/s{s}u{u}", f"c/s{s}", t, t if rng.random() < 0.6 else classes[rng.integers(4)]])
    right = [i for i, r in enumerate(preds) if r[2] == r[3] and r[1] == "c/s0"][:3]
    noisy = [list(r) for r in preds]
    for i in right:                                              # three more utterances of one speaker wrong
        noisy[i][3] = classes[(classes.index(noisy[i][2]) + 1) % 4]

    def entry(rows, size_mb):
        ua = metrics.ua([r[2] for r in rows], [r[3] for r in rows], classes)
        return {"m/int8/p": {**_paired_entry(rows, ua), "acc_per_mb": ua / size_mb, "size_mb": size_mb}}

    base, noise = entry(preds, 10.0), entry(noisy, 10.0)
    b, n = base["m/int8/p"]["acc_per_mb"], noise["m/int8/p"]["acc_per_mb"]
    assert n < b * 0.99                                          # beyond the 1 % relative tolerance ...
    assert any("UA/MB" in f for f in gate.compare(base, noise).failures)
    out = gate.compare(base, noise, paired=True)
    assert out.passed, out.failures                              # ... yet within the UA interval
    assert [r["metric"] for r in out.rows] == ["ΔUA paired", "UA/MB paired"]
    grown = gate.compare(base, entry(preds, 10.5), paired=True)  # same predictions, 5 % bigger
    assert not grown.passed and "UA/MB" in grown.failures[0] and "top of the UA interval" in grown.failures[0]
    assert gate.compare(base, entry(preds, 10.05), paired=True).passed   # 0.5 % bigger: within 1 %
