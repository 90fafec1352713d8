"""Faults while writing (issue 12): a full disk or a read-only file system ends in ONE named error,
leaves no temporary file behind and nothing half-written, and the work can be resumed.

Two ways to make the fault, so the tests run everywhere and are real where they can be:

* monkeypatched: ``os.replace`` (the rename every atomic write ends with) raises
  ``OSError(ENOSPC)`` / ``OSError(EROFS)`` for the files of the test; SQLite's own ``max_page_count``
  makes a store "full";
* real, when running as root with ``mount`` available: a tiny tmpfs that is filled up, or one
  remounted read-only (chmod cannot stop root). Skipped elsewhere.
"""
from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serbench import atomic, embed, gate, runtable
from serbench.cli import main
from serbench.errors import SerbenchError
from serbench.store import Store
from serbench.synth import corpora as synth
from _runs import write_run

RUN = dict(model="tiny", recipe="fp32", protocol="loso", mode="probe",
           config={"synthetic": True, "weights_source": {"kind": "random", "seed": 0}})


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files of any writer, old or new naming."""
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".part")) or ".tmp-" in p.name]


def _fail_rename(monkeypatch, under: Path, code: int = errno.ENOSPC, suffix: str = "") -> dict:
    """``os.replace`` into ``under`` (names ending in ``suffix``) fails with ``code``: the write itself
    went to a temporary file, whose rename is the step that cannot be done. Returns a switch:
    ``switch["on"] = False`` frees the space (``monkeypatch.undo`` would also undo conftest's
    SERBENCH_HOME)."""
    real = os.replace
    switch = {"on": True}

    def replace(src, dst, *a, **kw):
        if switch["on"] and str(dst).startswith(str(under)) and str(dst).endswith(suffix):
            raise OSError(code, os.strerror(code), str(src))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    return switch


# -- a real small or read-only file system (root only) -------------------------------------------


def _mount(path: Path, options: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture()
def tmpfs(tmp_path):
    """``make(name, size)``: a tmpfs of ``size`` mounted at tmp_path/name (skips unless root)."""
    mounted = []

    def make(name: str, size: str = "256k") -> Path:
        path = tmp_path / name
        if not _mount(path, f"size={size},mode=0755"):
            pytest.skip("a real small/read-only file system needs root and tmpfs mounts")
        mounted.append(path)
        return path

    yield make
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)


def fill(path: Path) -> Path:
    """Fill the file system of ``path`` up; returns the filler file (delete it to free the space)."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@contextmanager
def read_only(path: Path):
    """``path`` (a tmpfs from the fixture) read-only for the block, writable again after."""
    remount(path, "ro")
    try:
        yield path
    finally:
        remount(path, "rw")


# -- the helper itself ---------------------------------------------------------------------------


def test_atomic_write_names_the_fault_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out" / "report.md"
    atomic.write_text(target, "old\n", what="report")
    _fail_rename(monkeypatch, tmp_path)
    with pytest.raises(SerbenchError) as err:
        atomic.write_text(target, "new\n", what="report")
    msg = str(err.value)
    assert msg.startswith(f"cannot write report {target}: no space left on the device (disk full) [ENOSPC]")
    assert "\n" not in msg
    assert target.read_text() == "old\n" and not _leftovers(tmp_path)
    with pytest.raises(SerbenchError, match="it is a folder, not a file"):
        atomic.write_text(tmp_path / "out", "x")


def test_atomic_folder_keeps_the_old_folder_until_the_new_one_is_whole(tmp_path, monkeypatch):
    out = tmp_path / "model"
    with atomic.folder(out, "model folder") as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(SerbenchError, match="cannot write model folder .*no space left"):
        with atomic.folder(out, "model folder", replace=True) as tmp:
            (tmp / "a.txt").write_text("2")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "b.bin"))
    assert (out / "a.txt").read_text() == "1" and not _leftovers(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


# -- synthetic corpora ---------------------------------------------------------------------------


def test_full_disk_while_writing_synthetic_corpora_is_named_and_resumable(tmp_path, monkeypatch, capsys):
    out = tmp_path / "synth"
    disk = _fail_rename(monkeypatch, out, suffix=".wav")
    assert main(["synth", str(out), "--size", "tiny", "--corpora", "emodb", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("serbench synth: error: cannot write synthetic clip ") and "no space left" in err
    assert str(out / "EmoDB" / "wav") in err
    assert not _leftovers(out) and not (out / ".emodb.complete").exists()
    disk["on"] = False  # space freed
    roots = synth.write_all(out, size="tiny", corpora=("emodb",), progress=False)
    assert len(list((roots["emodb"] / "wav").glob("*.wav"))) == 4 * 2 * 7
    assert (out / ".emodb.complete").is_file()


def test_synthetic_corpora_on_a_really_full_disk(tmpfs):
    small = tmpfs("small", "1m")
    with pytest.raises(SerbenchError, match=r"cannot write synthetic .*no space left on the device"):
        synth.write_all(small, size="tiny", corpora=("crema-d",), progress=False)
    assert not _leftovers(small) and not (small / ".crema-d.complete").exists()


def test_read_only_synthetic_folder_is_named(tmpfs):
    ro = tmpfs("ro")
    with read_only(ro), pytest.raises(SerbenchError) as err:
        synth.write_all(ro / "corpora", size="tiny", corpora=("emodb",), progress=False)
    assert f"{ro} is on a read-only file system [EROFS]" in str(err.value)


# -- embedding cache -----------------------------------------------------------------------------


class Ones:
    def embed(self, wave):
        return np.ones((2, 3), np.float32) * len(wave)


def _wavs(folder: Path, n: int = 3) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        path = folder / f"u{i}.wav"
        sf.write(path, rng.normal(0, 0.1, 16_000 + 800 * i).astype(np.float32), 16_000)
        files.append(str(path))
    return files


def test_full_disk_while_caching_embeddings(tmp_path, monkeypatch):
    files = _wavs(tmp_path / "audio")
    cache = tmp_path / "cache"
    disk = _fail_rename(monkeypatch, cache, suffix=".npy")
    with pytest.raises(SerbenchError) as err:
        embed.embed_files(files, Ones(), "ones", cache_root=cache, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"cannot write the cached embedding of {files[0]} {cache}") and "no space left" in msg
    assert not _leftovers(cache)
    disk["on"] = False
    X, stats = embed.embed_files(files, Ones(), "ones", cache_root=cache, progress=False)
    assert X.shape == (3, 2, 3) and stats["computed"] == 3


def test_embedding_cache_on_a_really_full_disk_then_freed(tmp_path, tmpfs):
    files = _wavs(tmp_path / "audio")
    cache = tmpfs("cache", "128k")
    embed.embed_files(files[:1], Ones(), "ones", cache_root=cache, progress=False)
    filler = fill(cache)
    with pytest.raises(SerbenchError, match="cannot write the cached embedding .*no space left"):
        embed.embed_files(files, Ones(), "ones", cache_root=cache, progress=False)
    assert [p for p in _leftovers(cache)] == []
    filler.unlink()
    _, stats = embed.embed_files(files, Ones(), "ones", cache_root=cache, progress=False)
    assert stats["cache_hits"] == 1 and stats["computed"] == 2


def test_read_only_serbench_home_is_named_when_caching(tmp_path, tmpfs, monkeypatch):
    files = _wavs(tmp_path / "audio")
    home = tmpfs("home")
    monkeypatch.setenv("SERBENCH_HOME", str(home))
    with read_only(home), pytest.raises(SerbenchError) as err:
        embed.embed_files(files, Ones(), "ones", progress=False)
    msg = str(err.value)
    assert f"{home} is on a read-only file system [EROFS]" in msg and "SERBENCH_HOME" in msg


# -- the results store ---------------------------------------------------------------------------


def _fill_store(db: Store) -> None:
    """Let the store's file grow no further: SQLite answers SQLITE_FULL, as on a full disk."""
    pages = db._conn.execute("PRAGMA page_count").fetchone()[0]
    db._conn.execute(f"PRAGMA max_page_count = {pages}")


def _fold(n=400):
    return dict(metrics={"ua": 0.5}, audit={}, utt_ids=[f"u{i:05d}" for i in range(n)], y_true=["a"] * n,
                y_pred=["a"] * n, probs=np.full((n, 4), 0.25))


def test_full_store_is_named_rolled_back_and_the_run_stays_resumable(tmp_path):
    path = tmp_path / "r.sqlite"
    with Store(path) as db:
        rid = db.create_run(**RUN, provenance={})
        db.write_fold(rid, 0, **_fold())
        _fill_store(db)
        with pytest.raises(SerbenchError) as err:
            db.write_fold(rid, 1, **_fold())
        msg = str(err.value)
        assert msg.startswith(f"results store {path}: cannot store run {rid} fold 1: no space left on the device")
        assert "SQLITE_FULL" in msg and "nothing of this write was stored" in msg
        assert db.finished_folds(rid) == [0]               # all of fold 1 or nothing: nothing
        assert not db.predictions(rid, 1).shape[0]
        assert db.fail_run(rid, "SerbenchError: " + msg) is True  # an in-place update still fits
        assert db.run(rid)["status"] == "failed"
        assert db.find_unfinished(**{k: RUN[k] for k in ("model", "recipe", "protocol", "mode")},
                                  config=RUN["config"]) == rid


def test_fail_run_never_raises_when_the_store_cannot_be_written(tmp_path, monkeypatch, capsys):
    with Store(tmp_path / "r.sqlite") as db:
        rid = db.create_run(**RUN, provenance={})
        real = Store._write

        @contextmanager
        def full(self, action="write"):
            raise sqlite3.OperationalError("database or disk is full")
            yield  # pragma: no cover

        monkeypatch.setattr(Store, "_write", full)
        assert db.fail_run(rid, "boom") is False
        assert "stays 'running'" in capsys.readouterr().err
        monkeypatch.setattr(Store, "_write", real)
        assert db.run(rid)["status"] == "running"
        assert db.find_unfinished(**{k: RUN[k] for k in ("model", "recipe", "protocol", "mode")},
                                  config=RUN["config"]) == rid


def test_store_on_a_really_full_disk(tmpfs):
    disk = tmpfs("disk", "512k")
    with Store(disk / "r.sqlite") as db:
        rid = db.create_run(**RUN, provenance={})
        filler = fill(disk)
        with pytest.raises(SerbenchError, match=r"cannot store run \d+ fold 0: (no space left|disk I/O error)"):
            for _ in range(50):  # the WAL may have a little room left: keep writing until it has none
                db.write_fold(rid, 0, **_fold(4000))
                db._conn.execute("DELETE FROM predictions")
                db._conn.execute("DELETE FROM folds")
        db.fail_run(rid, "disk full")  # must not raise, whether or not it could write
        filler.unlink()
        db.resume_run(rid)
        db.write_fold(rid, 0, **_fold())
        db.finish_run(rid, {"ua": {"mean": 0.5}}, n_folds=1)
        assert db.run(rid)["status"] == "finished"


def _hand_store(path: Path) -> int:
    with Store(path) as db:
        return write_run(db, "tiny", "fp32", "loso", [0.5] * 4, weights="random", synthetic=True,
                         measurements={"size_mb": 0.1, "artefact": "x"})


def test_reading_commands_open_a_store_on_a_read_only_mount(tmpfs, tmp_path, capsys):
    ro = tmpfs("ro", "4m")
    rid = _hand_store(ro / "results.sqlite")
    assert sorted(p.name for p in ro.iterdir()) == ["results.sqlite"]   # closed cleanly: no -wal/-shm
    with read_only(ro):
        out = tmp_path / "rep"
        assert main(["compare", "--store", str(ro / "results.sqlite"), "--out", str(out)]) == 0
        assert (out / "runs.csv").is_file()
        baseline = tmp_path / "baseline.json"
        assert main(["gate", "--store", str(ro / "results.sqlite"), "--baseline", str(baseline), "--update"]) == 0
        assert main(["gate", "--store", str(ro / "results.sqlite"), "--baseline", str(baseline)]) == 0
        with runtable.open_store(ro / "results.sqlite") as db:
            assert db.run(rid)["status"] == "finished"
        capsys.readouterr()
        # writing is refused, naming the read-only folder
        with pytest.raises(SerbenchError) as err:
            Store(ro / "results.sqlite")
        assert f"{ro} is on a read-only file system" in str(err.value)
        with pytest.raises(SerbenchError) as err:
            Store(ro / "sub" / "new.sqlite")
        assert f"{ro} is on a read-only file system [EROFS]" in str(err.value)


def test_read_only_serbench_home_is_named_for_the_default_store(tmpfs, monkeypatch):
    home = tmpfs("home")
    monkeypatch.setenv("SERBENCH_HOME", str(home / "serbench"))
    with read_only(home), pytest.raises(SerbenchError) as err:
        Store()
    assert f"{home} is on a read-only file system [EROFS]" in str(err.value)
    assert "SERBENCH_HOME" in str(err.value)


def test_reading_never_creates_or_changes_a_store(tmp_path):
    missing = tmp_path / "none.sqlite"
    with pytest.raises(SerbenchError, match="no results store there"):
        Store.existing(missing)
    assert not missing.exists()
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(SerbenchError, match="not a serbench results store .*the file is empty"):
        Store.existing(empty)
    path = tmp_path / "r.sqlite"
    rid = _hand_store(path)
    before = path.read_bytes()
    with Store.existing(path) as db:
        assert db.run(rid)["status"] == "finished"
        with pytest.raises(SerbenchError, match="opened read-only"):
            db.add_measurements(rid, {"a": 1})
        assert db.fail_run(rid, "x") is False
    assert path.read_bytes() == before


def test_read_only_store_in_a_folder_without_write_permission(tmp_path):
    """The same as the read-only mount for a user whom file modes do stop (not root)."""
    if os.geteuid() == 0:
        pytest.skip("root ignores file modes; the tmpfs tests cover this as root")
    folder = tmp_path / "ro"
    folder.mkdir()
    _hand_store(folder / "results.sqlite")
    folder.chmod(0o555)
    try:
        with runtable.open_store(folder / "results.sqlite") as db:
            assert len(gate.current_entries(db)) == 1
        with pytest.raises(SerbenchError, match="not writable"):
            Store(folder / "results.sqlite")
    finally:
        folder.chmod(0o755)


def test_gate_baseline_on_a_full_disk_keeps_the_old_one(tmp_path, monkeypatch, capsys):
    path = tmp_path / "r.sqlite"
    _hand_store(path)
    baseline = tmp_path / "b" / "baseline.json"
    assert main(["gate", "--store", str(path), "--baseline", str(baseline), "--update"]) == 0
    before = baseline.read_text()
    _fail_rename(monkeypatch, baseline.parent)
    capsys.readouterr()
    assert main(["gate", "--store", str(path), "--baseline", str(baseline), "--update"]) == 2
    err = capsys.readouterr().err
    assert f"serbench gate: error: cannot write baseline {baseline}: no space left" in err
    assert baseline.read_text() == before and not _leftovers(tmp_path)


def test_report_on_a_full_disk_is_named(tmp_path, monkeypatch, capsys):
    path = tmp_path / "r.sqlite"
    _hand_store(path)
    out = tmp_path / "rep"
    disk = _fail_rename(monkeypatch, out, suffix=".csv")
    assert main(["compare", "--store", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("serbench compare: error: cannot write report file ") and "no space left" in err
    assert not _leftovers(out)
    disk["on"] = False  # the half-written report folder is still recognised as a report, so this works
    assert main(["compare", "--store", str(path), "--out", str(out)]) == 0
    assert (out / "runs.csv").is_file()



def test_serbench_run_on_a_full_disk_ends_in_one_line_and_resumes(tmp_path, monkeypatch, capsys):
    """The whole command: the embedding cache cannot be written half-way through a run."""
    from serbench.paths import home

    args = ["run", "--model", "tiny", "--protocol", "production", "--weights", "random:0", "--synthetic",
            "--synthetic-size", "tiny", "--no-measure", "--quiet"]
    disk = _fail_rename(monkeypatch, home() / "cache" / "embeddings", suffix=".npy")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("serbench run: error: cannot write the cached embedding of ") and "no space left" in err
    assert "SERBENCH_HOME" in err
    assert not _leftovers(home())
    with Store() as db:
        runs = db.runs()
    assert runs["status"].tolist() == ["failed"] and "no space left" in runs.loc[0, "error"]
    disk["on"] = False
    assert main(args + ["--resume"]) == 0
    with Store() as db:
        assert db.runs()["status"].tolist() == ["finished"]


def test_full_disk_while_building_an_artefact_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    from serbench import paths, registry
    from serbench.artefacts import cache

    root = paths.home() / "artefacts"
    disk = _fail_rename(monkeypatch, root)
    entry, recipe = registry.load_model("tiny"), registry.load_recipe("fp32")
    with pytest.raises(SerbenchError) as err:
        cache.build(entry, recipe, "random:0")
    msg = str(err.value)
    assert "cannot write artefact tiny--fp32--" in msg and "no space left" in msg and str(root) in msg
    assert not _leftovers(root) and not [p for p in root.iterdir() if p.name.startswith(".")]
    disk["on"] = False
    art = cache.build(entry, recipe, "random:0")
    assert (art.path / cache.META).is_file() and art.path.parent == root
