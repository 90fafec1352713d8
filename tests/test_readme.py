"""README is the truth: its copies of files are the files, its Python example runs, its commands parse."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from serbench.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def block(marker: str) -> str:
    """The fenced block right after ``<!-- marker -->``."""
    m = re.search(rf"<!-- {re.escape(marker)} -->\n```[a-z]*\n(.*?)```", README, re.S)
    assert m, f"README has no block after <!-- {marker} -->"
    return m.group(1)


def test_the_grid_example_is_the_file():
    assert block("examples/grid.yaml") == (ROOT / "examples" / "grid.yaml").read_text()


def commands() -> list[str]:
    """Every concrete ``serbench ...`` command in README: lines of bash blocks and inline code
    spans; synopses with ``[optional]``, ``a|b`` or ``...`` parts are left out (not commands)."""
    found = []
    for body in re.findall(r"```bash\n(.*?)```", README, re.S):
        for cmd in re.split(r"&&|\n", body.replace("\\\n", " ")):
            found.append(cmd.split("#")[0].strip())
    found += re.findall(r"`(serbench [^`]+)`", README.replace("\n", " "))
    return sorted({c for c in found if c.startswith("serbench ") and not re.search(r"[\[\]|…{}<>]|\.\.\.", c)})


def test_every_serbench_command_in_the_readme_parses(capsys):
    """Each concrete command is accepted by the parser (model and file names are checked when a
    command runs, not here): a renamed or removed flag in README fails this. A fragment that
    names one flag of a command (``serbench run --head NAME``) may lack the required ones."""
    parser = build_parser()
    cmds = [c for c in commands() if not c.split()[1].endswith(":")]   # "serbench run: error..." is output
    assert len(cmds) >= 20
    bad = []
    for cmd in cmds:
        try:
            parser.parse_args(shlex.split(cmd)[1:])
        except SystemExit:
            err = capsys.readouterr().err
            if "the following arguments are required" not in err:
                bad.append(f"{cmd}\n    {err.strip().splitlines()[-1]}")
    assert not bad, "README commands that do not parse:\n" + "\n".join(bad)


@pytest.mark.slow
def test_the_python_example_runs_as_written_on_the_tiny_model(tmp_path, monkeypatch):
    code = block("python-example")
    # the compressed runs on the tiny model and corpora; egemaps's speaker-kfold needs the small RAVDESS (5 speakers)
    small = (code.replace('"distilhubert"', '"tiny"')
             .replace('weights="random", synthetic=True', 'weights="random:0", synthetic=True, synthetic_size="tiny"'))
    assert small != code and "tempfile.mkdtemp" in code and "/tmp/sb" not in code
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    space: dict = {}
    exec(compile(small, "README.md python-example", "exec"), space)
    assert (Path(space["home"]) / "model" / "MODEL_CARD.md").is_file()
    assert str(space["home"]).startswith(str(tmp_path))
