"""The results store's SQLite file: its tables, their migrations, opening it and naming its failures.

Why SQLite (stdlib ``sqlite3``): one file a user can copy, query with any tool and keep next to a
paper, with real transactions. The file is opened in WAL mode with a busy timeout, so several
``serbench run`` processes can write to it at once (writers queue for the lock, readers never
block), and each write takes the lock up front (``BEGIN IMMEDIATE``) so a waiting writer queues
instead of failing half-way. Reading commands open it read-only, which also works on a read-only
mount. Every SQLite failure becomes one line naming the file, what was being done and why.

This is SQLite mechanics; what is stored (runs, folds, predictions, measurements) is
:mod:`serbench.store`.
"""
from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serbench import atomic
from serbench.errors import SerbenchError

SCHEMA_VERSION = 2
TABLES = {"runs", "folds", "predictions", "measurements"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created     TEXT NOT NULL,
    updated     TEXT NOT NULL,
    model       TEXT NOT NULL,
    recipe      TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    mode        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    config_hash TEXT NOT NULL,
    config      TEXT NOT NULL,
    provenance  TEXT NOT NULL,
    summary     TEXT,
    error       TEXT,
    invocation  TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_config ON runs (config_hash, status);
CREATE TABLE IF NOT EXISTS folds (
    run_id   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    fold     INTEGER NOT NULL,
    name     TEXT,
    status   TEXT NOT NULL,
    finished TEXT NOT NULL,
    metrics  TEXT NOT NULL,
    audit    TEXT NOT NULL,
    details  TEXT,
    PRIMARY KEY (run_id, fold)
);
CREATE TABLE IF NOT EXISTS predictions (
    run_id INTEGER NOT NULL,
    fold   INTEGER NOT NULL,
    utt_id TEXT NOT NULL,
    y_true TEXT NOT NULL,
    y_pred TEXT NOT NULL,
    probs  TEXT,
    speaker TEXT,
    PRIMARY KEY (run_id, fold, utt_id),
    FOREIGN KEY (run_id, fold) REFERENCES folds (run_id, fold) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS measurements (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
"""
# schema version -> the statements that bring a store of that version to the next one
MIGRATIONS = {
    1: ["ALTER TABLE runs ADD COLUMN invocation TEXT",       # one id per `serbench run` invocation
        "ALTER TABLE predictions ADD COLUMN speaker TEXT"],  # clustered statistics resample speakers
}



def open_writable(path: Path, timeout: float) -> sqlite3.Connection:
    """The store file at ``path`` (created with its folder if missing, migrated if older), in WAL
    mode and autocommit (``isolation_level=None``: transactions are explicit, see :func:`transaction`)."""
    atomic.makedirs(path.parent, "the folder of the results store")
    if path.is_dir():
        raise SerbenchError(f"{path}: is a folder, not a results store file")
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise error(path, exc, "open it") from exc
    try:
        _setup(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if _errorname(exc) in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
            raise SerbenchError(f"{path}: not a usable results store: {exc}") from exc
        raise error(path, exc, "open it for writing") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def open_readonly(path: Path, timeout: float) -> sqlite3.Connection:
    """``mode=ro``: nothing is created or written. A WAL store in a folder that cannot be
    written (a read-only mount) and without a ``-wal`` file still holding changes is opened
    ``immutable`` (SQLite cannot create its shared-memory file there; nothing can change it)."""
    if path.is_dir():
        raise SerbenchError(f"{path}: is a folder, not a results store file")
    if not path.is_file():
        raise SerbenchError(f"{path}: no results store there (run `serbench run` first, or pass --store)")
    base = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    wal = path.with_name(path.name + "-wal")
    tries = [base]
    if not os.access(path.parent, os.W_OK) and not (wal.is_file() and wal.stat().st_size > 0):
        tries.append(base + "&immutable=1")
    for i, uri in enumerate(tries):
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            conn.close()
            if i + 1 < len(tries) and _errorname(exc) == "SQLITE_CANTOPEN":
                continue
            if _errorname(exc) in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                raise SerbenchError(f"{path}: not a usable results store: {exc}") from exc
            raise error(path, exc, "read it") from exc
        if version > SCHEMA_VERSION:
            conn.close()
            raise SerbenchError(f"{path}: written by a newer serbench (schema {version}, "
                                f"this one reads {SCHEMA_VERSION})")
        if not TABLES <= tables:
            conn.close()
            raise SerbenchError(f"{path}: not a serbench results store (it has no runs table"
                                f"{'; the file is empty' if path.stat().st_size == 0 else ''})")
        conn.execute("PRAGMA query_only=ON")
        return conn
    raise AssertionError("unreachable")


@contextmanager
def transaction(conn: sqlite3.Connection, path: Path, action: str) -> Iterator[sqlite3.Connection]:
    """One write transaction, holding the write lock from its start. A failure (disk full,
    read-only ...) rolls it back whole and is raised as a :class:`SerbenchError` naming the
    store and ``action``."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise error(path, exc, action) from exc
    try:
        yield conn
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        _rollback(conn)
        raise error(path, exc, action) from exc
    except BaseException:
        _rollback(conn)
        raise


def error(path: Path, exc: sqlite3.Error, action: str) -> SerbenchError:
    """An SQLite failure as one line naming the store, what was being done and why."""
    name = _errorname(exc)
    folder = path.parent
    if name == "SQLITE_FULL":
        why = "no space left on the device (disk full) [SQLITE_FULL]; nothing of this write was stored"
    elif name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
        if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            where = "on a read-only file system" if _readonly_mount(folder) else "not writable"
            why = (f"{folder} is {where} [{name}]; writing results needs a writable folder "
                   "(pass --store with another path, or set SERBENCH_HOME)")
        else:
            why = f"{exc} [{name}]"
    elif name.startswith("SQLITE_IOERR"):
        why = f"disk I/O error [{name}] (is the disk full or gone?); nothing of this write was stored"
    else:
        why = f"{exc}" + (f" [{name}]" if name else "")
    return SerbenchError(f"results store {path}: cannot {action}: {why}")


def _setup(conn: sqlite3.Connection, path: Path) -> None:
    for attempt in range(50):  # switching to WAL needs a moment of exclusive access
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if attempt == 49 or not _errorname(exc).startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                raise
            time.sleep(0.1)
    if mode.lower() != "wal":
        raise SerbenchError(f"{path}: cannot use WAL mode (got {mode!r}); is it on a network drive?")
    conn.execute("PRAGMA foreign_keys=ON")
    with transaction(conn, path, "set up its tables"):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SerbenchError(f"{path}: written by a newer serbench (schema {version}, "
                                f"this one reads {SCHEMA_VERSION})")
        if version == 0:
            for statement in filter(str.strip, SCHEMA.split(";")):  # executescript would COMMIT
                conn.execute(statement)
        else:
            for v in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[v]:
                    conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back, unless SQLite has already (it does itself on SQLITE_FULL and some I/O errors)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _errorname(exc: BaseException) -> str:
    """SQLite's name for the error (``SQLITE_FULL`` ...), from Python's attribute or the message."""
    name = getattr(exc, "sqlite_errorname", None)
    if name:
        return name
    text = str(exc).lower()
    for needle, guess in (("disk is full", "SQLITE_FULL"), ("readonly database", "SQLITE_READONLY"),
                          ("unable to open", "SQLITE_CANTOPEN"), ("not a database", "SQLITE_NOTADB"),
                          ("disk i/o", "SQLITE_IOERR"), ("locked", "SQLITE_BUSY")):
        if needle in text:
            return guess
    return ""


def _readonly_mount(folder: Path) -> bool:
    """Whether ``folder`` lies on a file system mounted read-only (statvfs ST_RDONLY)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False
