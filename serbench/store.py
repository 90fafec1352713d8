"""The results store: one SQLite file holding runs, their folds, predictions and measurements.

Several ``serbench run`` processes can write to one store at once; how the SQLite file makes that
safe (WAL, write lock taken up front, read-only opening, migrations) is :mod:`serbench.storefile`.

A fold's metrics, audit and every prediction are written in ONE transaction: a process killed at
any point leaves either the whole fold or nothing of it. ``--resume`` then finds the unfinished
run with the same configuration (:meth:`Store.find_unfinished`), skips its stored folds
(:meth:`Store.finished_folds`) and writes the rest; the (run, fold) primary key makes a fold
impossible to store twice.

Every run row carries its configuration (hashed: the resume key; it must say whether the data
are synthetic and where the weights came from) and provenance (versions, git commit, machine:
:func:`serbench.provenance.provenance`), so any number in the store can be traced to what produced it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from serbench import storefile
from serbench.errors import SerbenchError
from serbench.paths import home

REQUIRED_CONFIG = ("synthetic", "weights_source")
RUN_JSON = ("config", "provenance", "summary")   # the runs table's JSON columns
OBJECT_JSON = {"config", "provenance", "summary", "metrics", "audit", "details"}   # always JSON objects


class DamagedRow(SerbenchError):
    """A row of the store whose JSON cannot be read (cut short, overwritten): named, never a traceback."""


def default_path() -> Path:
    return home() / "results.sqlite"


class Store:
    """A results store file; use as a context manager or call :meth:`close`.

    One connection per instance and per process (do not share an instance across a fork).
    ``timeout`` is how long a writer waits for another process's transaction to finish.
    """

    def __init__(self, path: str | Path | None = None, timeout: float = 60.0, readonly: bool = False):
        self.path = Path(path) if path is not None else default_path()
        self.readonly = readonly
        self._conn = (storefile.open_readonly if readonly else storefile.open_writable)(self.path, timeout)

    @classmethod
    def existing(cls, path: str | Path | None = None, timeout: float = 60.0) -> Store:
        """The store at ``path`` opened for reading only (``compare``, ``gate``, ``export``): it must
        exist (opening never creates one), and it can be read from a read-only folder or mount."""
        return cls(path, timeout=timeout, readonly=True)

    @contextmanager
    def _write(self, action: str = "write to it") -> Iterator[sqlite3.Connection]:
        """One write transaction (:func:`serbench.storefile.transaction`): all of it or nothing."""
        if self.readonly:
            raise SerbenchError(f"results store {self.path}: cannot {action}: it was opened read-only")
        with storefile.transaction(self._conn, self.path, action) as conn:
            yield conn

    def close(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error:  # nothing is pending: every write was committed or rolled back
            pass

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run_files(self, run_id: int) -> Path:
        """The folder for a run's files that do not fit a table (trained heads): beside the store
        file (``results.sqlite`` -> ``results.runs/<id>/``), so two stores never share one."""
        return self.path.parent / f"{self.path.stem}.runs" / str(int(run_id))

    # -- runs ---------------------------------------------------------------------------------

    def create_run(self, *, model: str, recipe: str, protocol: str, mode: str, config: Mapping,
                   provenance: Mapping, invocation: str | None = None) -> int:
        """Store a new run (status ``running``) and return its id.

        ``config`` is everything that determines the results (protocol and recipe content, seed,
        trainer settings, manifest hashes ...) and must include ``synthetic`` (bool) and
        ``weights_source``; it is the key :meth:`find_unfinished` matches on.
        """
        missing = [k for k in REQUIRED_CONFIG if k not in config]
        if missing:
            raise ValueError(f"run config lacks {missing} (every run must say whether its data are "
                             "synthetic and where its weights came from)")
        now = _now()
        with self._write(f"store a new run of {model}/{recipe}/{protocol}") as conn:
            cur = conn.execute(
                "INSERT INTO runs (created, updated, model, recipe, protocol, mode, status, config_hash,"
                " config, provenance, invocation) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (now, now, model, recipe, protocol, mode, config_hash(model, recipe, protocol, mode, config),
                 _dumps(config), _dumps(provenance), invocation),
            )
            return int(cur.lastrowid)

    def find_unfinished(self, *, model: str, recipe: str, protocol: str, mode: str, config: Mapping) -> int | None:
        """The newest run with exactly this configuration that is not finished (running or
        failed), or ``None``: what ``--resume`` continues."""
        return self._newest(config_hash(model, recipe, protocol, mode, config), finished=False)

    def find_finished(self, *, model: str, recipe: str, protocol: str, mode: str, config: Mapping) -> int | None:
        """The newest finished run with exactly this configuration, or ``None``: what a resumed
        sweep keeps instead of running again."""
        return self._newest(config_hash(model, recipe, protocol, mode, config), finished=True)

    def _newest(self, config_hash_: str, finished: bool) -> int | None:
        row = self._conn.execute(
            f"SELECT id FROM runs WHERE config_hash = ? AND status {'=' if finished else '!='} 'finished' "
            "ORDER BY id DESC LIMIT 1", (config_hash_,),
        ).fetchone()
        return None if row is None else int(row[0])

    def resume_run(self, run_id: int, provenance: Mapping | None = None) -> None:
        """Mark ``run_id`` running again; the resuming process's provenance is appended under
        ``resumed`` (a resumed run may span two commits or machines, and the store says so)."""
        with self._write(f"mark run {run_id} running again") as conn:
            prov = self._loads(self._run_row(conn, run_id)["provenance"], f"run {run_id}", "provenance")
            prov.setdefault("resumed", []).append({"at": _now(), **(provenance or {})})
            conn.execute("UPDATE runs SET status = 'running', error = NULL, updated = ?, provenance = ? "
                         "WHERE id = ?", (_now(), _dumps(prov), run_id))

    def finish_run(self, run_id: int, summary: Mapping | None = None, n_folds: int | None = None) -> None:
        """Mark ``run_id`` finished with its aggregate ``summary``; with ``n_folds``, refuse if
        not every fold 0..n_folds-1 is stored."""
        with self._write(f"mark run {run_id} finished") as conn:
            self._run_row(conn, run_id)
            if n_folds is not None:
                done = {r[0] for r in conn.execute("SELECT fold FROM folds WHERE run_id = ?", (run_id,))}
                missing = sorted(set(range(n_folds)) - done)
                if missing:
                    raise SerbenchError(f"run {run_id} cannot finish: folds {missing} are not stored")
            conn.execute("UPDATE runs SET status = 'finished', updated = ?, summary = ? WHERE id = ?",
                         (_now(), _dumps(summary) if summary is not None else None, run_id))

    def fail_run(self, run_id: int, error: str) -> bool:
        """Mark ``run_id`` failed with a message; its stored folds stay and it can be resumed.

        Called while another error is on its way out, so it never raises because of the store:
        when the store cannot be written (the disk that made the run fail is still full), it
        says so on stderr and returns False. The run then stays ``running``, which ``--resume``
        continues just as it does a failed one (:meth:`find_unfinished`)."""
        return self._note_stop(run_id, "failed", str(error), f"mark run {run_id} failed")

    def interrupt_run(self, run_id: int) -> bool:
        """Note that ``run_id`` was interrupted (Ctrl-C): it stays ``running``, not ``failed``
        (nothing went wrong; ``--resume`` continues it), with ``error`` saying when it stopped.
        Like :meth:`fail_run` it never raises because of the store."""
        return self._note_stop(run_id, "running", f"interrupted (Ctrl-C) at {_now()}; resume with --resume",
                               f"note that run {run_id} was interrupted", only_running=True)

    def _note_stop(self, run_id: int, status: str, error: str, doing: str, only_running: bool = False) -> bool:
        """Set a stopped run's status and ``error``, never raising because of the store (see
        :meth:`fail_run`): False, with a warning on stderr, when the store cannot be written."""
        try:
            with self._write(doing) as conn:
                conn.execute("UPDATE runs SET status = ?, updated = ?, error = ? WHERE id = ?"
                             + (" AND status = 'running'" if only_running else ""), (status, _now(), error, run_id))
            return True
        except (SerbenchError, sqlite3.Error, OSError) as exc:
            print(f"warning: {exc}; run {run_id} stays 'running' in the store, and `serbench run ... --resume` "
                  "continues it", file=sys.stderr)
            return False

    # -- folds, predictions, measurements ------------------------------------------------------

    def finished_folds(self, run_id: int) -> list[int]:
        return [int(r[0]) for r in self._conn.execute(
            "SELECT fold FROM folds WHERE run_id = ? ORDER BY fold", (run_id,))]

    def write_fold(self, run_id: int, fold: int, *, metrics: Mapping, audit: Mapping,
                   utt_ids: Sequence[str], y_true: Sequence[str], y_pred: Sequence[str],
                   probs: np.ndarray | Sequence[Sequence[float]] | None = None,
                   name: str | None = None, details: Mapping | None = None,
                   speakers: Sequence[str] | None = None) -> None:
        """Store one finished fold: metrics, audit, optional details (training history ...) and
        one prediction per test utterance (labels as class names, ``probs`` in class order), all
        in one transaction. A fold that is already stored is an error, never a second copy."""
        n = len(utt_ids)
        if not (len(y_true) == len(y_pred) == n) or (probs is not None and len(probs) != n):
            raise ValueError("utt_ids, y_true, y_pred (and probs) must have one entry per utterance")
        if speakers is not None and len(speakers) != n:
            raise ValueError("speakers must have one entry per utterance")
        prob_json = [None] * n if probs is None else [_dumps(p) for p in np.asarray(probs, dtype=float).round(7).tolist()]
        spk = [None] * n if speakers is None else [str(x) for x in speakers]
        rows = [(run_id, int(fold), str(u), str(t), str(p), pj, sp)
                for u, t, p, pj, sp in zip(utt_ids, y_true, y_pred, prob_json, spk)]
        fold_row = (run_id, int(fold), name, "finished", _now(), _dumps(metrics), _dumps(audit),
                    _dumps(details) if details is not None else None)
        with self._write(f"store run {run_id} fold {fold}") as conn:
            status = self._run_row(conn, run_id)["status"]
            if status == "finished":
                raise SerbenchError(f"run {run_id} is finished; its folds cannot change")
            if conn.execute("SELECT 1 FROM folds WHERE run_id = ? AND fold = ?", (run_id, fold)).fetchone():
                raise SerbenchError(f"run {run_id} fold {fold} is already stored")
            conn.execute("INSERT INTO folds (run_id, fold, name, status, finished, metrics, audit, details) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", fold_row)
            conn.executemany("INSERT INTO predictions (run_id, fold, utt_id, y_true, y_pred, probs, speaker) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("UPDATE runs SET updated = ? WHERE id = ?", (_now(), run_id))

    def add_measurements(self, run_id: int, values: Mapping) -> None:
        """Store ``{key: JSON-able value}`` (size, latency ...) for a run; a key stored again is
        replaced, so re-measuring on resume does not duplicate."""
        with self._write(f"store the measurements of run {run_id}") as conn:
            self._run_row(conn, run_id)
            conn.executemany("INSERT OR REPLACE INTO measurements (run_id, key, value) VALUES (?, ?, ?)",
                             [(run_id, str(k), _dumps(v)) for k, v in values.items()])

    # -- reading ------------------------------------------------------------------------------

    def status(self, run_id: int) -> str:
        """A run's status alone: no JSON cell is decoded, so it answers for a damaged row too
        (the runner asks it while it handles another error, which a damaged row must not hide)."""
        return str(self._run_row(self._conn, run_id)["status"])

    def run(self, run_id: int) -> dict:
        """One run as a dict, JSON fields decoded (a :class:`DamagedRow` error if one is damaged)."""
        return self._decode(self._run_row(self._conn, run_id), RUN_JSON)

    def runs(self) -> pd.DataFrame:
        """All runs, newest last; ``config``/``provenance``/``summary`` decoded to dicts, plus
        ``synthetic``, ``weights_source`` and ``folds_done`` columns for filtering.

        A run whose row is damaged is left out, with a warning naming it and what is wrong, so
        the rest of the store stays usable; ``attrs["damaged"]`` maps its id to the reason (for a
        caller asked for that very run: :func:`serbench.runtable.select_runs`)."""
        df = self._frame("SELECT r.*, (SELECT COUNT(*) FROM folds f WHERE f.run_id = r.id) AS folds_done "
                         "FROM runs r ORDER BY r.id", (), RUN_JSON, skip_damaged=True)
        df["synthetic"] = [bool(c.get("synthetic")) for c in df["config"]]
        df["weights_source"] = [c.get("weights_source") for c in df["config"]]
        return df

    def fold_results(self, run_id: int | None = None) -> pd.DataFrame:
        """Stored folds (of one run, or all), with ``ua``/``wa``/``macro_f1`` lifted out of metrics."""
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        df = self._frame(f"SELECT * FROM folds {where} ORDER BY run_id, fold", args, ("metrics", "audit", "details"))
        for key in ("ua", "wa", "macro_f1"):
            df[key] = [m.get(key) for m in df["metrics"]]
        return df

    def predictions(self, run_id: int, fold: int | None = None) -> pd.DataFrame:
        sql, args = "SELECT * FROM predictions WHERE run_id = ?", [run_id]
        if fold is not None:
            sql, args = sql + " AND fold = ?", args + [fold]
        return self._frame(sql + " ORDER BY fold, utt_id", tuple(args), ("probs",))

    def measurements(self, run_id: int | None = None) -> pd.DataFrame:
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        return self._frame(f"SELECT * FROM measurements {where} ORDER BY run_id, key", args, ("value",))

    def _frame(self, sql: str, args: tuple, json_cols: tuple[str, ...], skip_damaged: bool = False) -> pd.DataFrame:
        cur = self._conn.execute(sql, args)
        cols = [d[0] for d in cur.description]
        rows, damaged = [], {}
        for values in cur.fetchall():
            row = dict(zip(cols, values))
            try:
                rows.append(self._decode(row, json_cols))
            except DamagedRow as exc:
                if not skip_damaged:
                    raise
                damaged[int(row["id"])] = str(exc)
                print(f"warning: {exc}; left out", file=sys.stderr)
        df = pd.DataFrame(rows, columns=cols)
        df.attrs["damaged"] = damaged
        return df

    def _decode(self, row: dict, json_cols: tuple[str, ...]) -> dict:
        """``row`` with its JSON columns decoded (NULL stays None); a column that holds an object
        when written (:data:`OBJECT_JSON`) must decode to one."""
        where = _row_name(row)
        for col in json_cols:
            row[col] = self._loads(row[col], where, col) if isinstance(row.get(col), str) else None
            if col in OBJECT_JSON and row[col] is not None and not isinstance(row[col], dict):
                raise DamagedRow(f"results store {self.path}: {where} is damaged: its {col} is "
                                 f"{type(row[col]).__name__} JSON, not an object")
        return row

    def _loads(self, text: str, where: str, col: str):
        """JSON from the store, or a :class:`DamagedRow` naming the store, the row and the column."""
        try:
            return json.loads(text)
        except ValueError as exc:
            why = (f"{exc.msg} at character {exc.pos} of {len(text)}" if isinstance(exc, json.JSONDecodeError)
                   else str(exc))
            raise DamagedRow(f"results store {self.path}: {where} is damaged: its {col} is not valid JSON "
                             f"({why}; cut short or overwritten?)") from exc

    def _run_row(self, conn: sqlite3.Connection, run_id: int) -> dict:
        cur = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
        row = cur.fetchone()
        if row is None:
            raise SerbenchError(f"{self.path}: no run {run_id}")
        return dict(zip([d[0] for d in cur.description], row))


def config_hash(model: str, recipe: str, protocol: str, mode: str, config: Mapping) -> str:
    """sha256 of the run's identifying fields (canonical JSON): the resume key."""
    payload = _dumps({"model": model, "recipe": recipe, "protocol": protocol, "mode": mode, "config": config})
    return hashlib.sha256(payload.encode()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_plain)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _row_name(row: dict) -> str:
    """Which row this is, in words: ``run 3``, ``run 3 fold 1``, ``run 3 fold 1 utterance X``,
    ``run 3 measurement size_mb``."""
    if "run_id" not in row:
        return f"run {row.get('id')}"
    name = f"run {row['run_id']}"
    if "fold" in row:
        name += f" fold {row['fold']}"
    if "utt_id" in row:
        name += f" utterance {row['utt_id']}"
    if "key" in row:
        name += f" measurement {row['key']}"
    return name
