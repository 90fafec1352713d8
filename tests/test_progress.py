"""Long silent steps say they are going: serbench.progress, and the commands that use it."""
from __future__ import annotations

import io
import re
import threading
import time

import pytest

from serbench import progress
from serbench.cli import main


def test_a_step_says_it_started_how_long_it_has_been_going_and_how_it_ended():
    out = io.StringIO()
    with progress.shown(stream=out):
        with progress.step("building x", every=0.05):
            time.sleep(0.3)
        with pytest.raises(RuntimeError), progress.step("building y", every=10):
            raise RuntimeError("boom")
    lines = out.getvalue().splitlines()
    assert lines[0] == "building x ..." and re.fullmatch(r"building x: done in \d+ s", lines[-3])
    beats = [ln for ln in lines if re.fullmatch(r"building x: \d+ s so far", ln)]
    assert 2 <= len(beats) <= 7   # every 0.05 s for 0.3 s, give or take a loaded machine
    assert lines[-2:] == ["building y ...", "building y: failed after 0 s"]


def test_without_a_listener_a_step_prints_nothing_and_starts_no_thread(capsys):
    before = threading.active_count()
    with progress.step("quiet", every=0.01):
        assert threading.active_count() == before
        time.sleep(0.05)
    assert capsys.readouterr() == ("", "")


def test_shown_inside_shown_adds_no_second_listener():
    out = io.StringIO()
    with progress.shown(stream=out), progress.shown(stream=out):
        with progress.step("once", every=10):
            pass
    assert out.getvalue().count("once ...") == 1
    assert not progress.LOG.handlers   # removed on the way out


def test_bench_names_each_build_and_timing_on_stderr_and_quiet_json_stays_clean(capsys):
    args = ["bench", "--model", "tiny", "--weights", "random:0", "--recipe", "static-int8", "--repeats", "2",
            "--probe", "2", "--calibration", "2", "--no-energy", "--no-rss"]
    assert main(args) == 0
    err = capsys.readouterr().err
    for what in ("tiny: building the fp32 artefact", "tiny: building the static-int8 artefact",
                 "timing 2 encoders"):
        assert f"{what} ..." in err and re.search(re.escape(what) + r": done in \d+ s", err)
    quiet = [a if a != "static-int8" else "dynamic-int8" for a in args] + ["--json"]
    assert main(quiet) == 0   # dynamic-int8 is built now, but --json keeps stderr free of progress
    assert "building" not in capsys.readouterr().err
