"""`serbench list KIND`: every name a command takes, with its description and file, from the files."""
from __future__ import annotations

import json

import pytest
import yaml

from serbench import heads, labels, protocols, registry
from serbench.cli import main

SOURCES = {"models": registry.model_files, "recipes": registry.recipe_files, "protocols": protocols.available,
           "labelmaps": labels.available, "heads": heads.files}


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_each_kind_lists_every_file_by_name_with_a_description(kind, capsys):
    assert main(["list", kind, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    files = SOURCES[kind]()
    assert sorted(r["name"] for r in rows) == sorted(files)
    assert all(r["file"] == str(files[r["name"]]) and r["description"] for r in rows)
    assert main(["list", kind]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in files)


def test_a_label_map_is_described_by_the_first_sentence_of_its_comment(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "labelmaps"
    folder.mkdir()
    (folder / "mine.yaml").write_text("# Mine: calm as neutral, i.e. four classes. Second sentence here.\n"
                                      + yaml.safe_dump({"name": "mine", "classes": ["a", "b"],
                                                        "map": {"1": "a", "2": "b"}}))
    monkeypatch.setenv("SERBENCH_REGISTRY", str(tmp_path))
    assert main(["list", "labelmaps", "--json"]) == 0
    mine = next(r for r in json.loads(capsys.readouterr().out) if r["name"] == "mine")
    assert mine["description"] == "Mine: calm as neutral, i.e. four classes."
    assert mine["classes"] == "a, b"


def test_every_command_that_prints_progress_takes_quiet_and_every_reporting_command_json():
    """One voice: the same flags mean the same thing on every command that can use them."""
    from serbench.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    flags = {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.items()}
    for name in ("run", "sweep", "bench", "tune", "export", "compare", "corpus"):
        assert "--quiet" in flags[name], name
    for name in ("run", "sweep", "bench", "tune", "export", "compare", "gate", "corpus", "models", "list", "infer"):
        assert "--json" in flags[name], name
    for name in ("bench", "tune"):
        assert "--repeats" in flags[name] and "--runs" not in flags[name], name
    assert "--runs" in flags["compare"] and "--margin" in flags["compare"] and "--margin" in flags["run"]
