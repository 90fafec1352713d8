"""Writing files so that nothing is half-written and every failure names what and where.

One rule for every file serbench writes (reports, the gate baseline, cached embeddings,
synthetic corpora, exported model folders): write to a temporary name in the *same* folder,
flush and fsync it, then rename it over the final name (atomic on POSIX). On any error the
temporary is removed and an ``OSError`` (disk full, read-only file system, permission denied,
a folder where a file should be ...) becomes ONE :class:`SerbenchError` line saying what could
not be written, where, and why, so the CLI prints ``serbench CMD: error: ...`` and no traceback.

Temporary names start with a dot and end in ``.tmp`` (``.NAME.<pid>.tmp``), so a reader never
mistakes one for a finished file.
"""
from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serbench.errors import SerbenchError

REASONS = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "file name too long",
    errno.EFBIG: "file too large for the file system",
    errno.EIO: "input/output error on the device",
}


def reason(exc: OSError) -> str:
    """``exc`` in words, e.g. ``no space left on the device (disk full) [ENOSPC]``."""
    code = exc.errno
    text = REASONS.get(code) or exc.strerror or str(exc)
    return f"{text} [{errno.errorcode.get(code, code)}]" if code else text


def _hint(exc: OSError, path: Path) -> str:
    if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
        return ""
    from serbench.paths import home

    try:
        root = home().resolve()
        under_home = Path(os.path.abspath(path)).resolve().is_relative_to(root)
    except (OSError, RuntimeError):
        under_home = False
    if under_home:
        return f"; it is under SERBENCH_HOME ({root}): point SERBENCH_HOME at a writable folder with free space"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "; free some space there and run the command again"
    return "; choose a writable location"


def error(exc: OSError, path: str | Path, what: str = "file", action: str = "write") -> SerbenchError:
    """One readable line for an ``OSError`` met while doing ``action`` on ``what`` at ``path``.

    A read-only file system names the folder that could not be written; a failure on one file
    inside a folder being written names that file."""
    path = Path(path)
    failed = Path(exc.filename) if getattr(exc, "filename", None) else None
    if exc.errno == errno.EROFS:
        where = failed.parent if failed is not None and failed != path else path.parent
        why = f"{where} is on a read-only file system [EROFS]"
    else:
        why = reason(exc)
        if failed is not None and path in failed.parents:
            why += f" (writing {failed.relative_to(path)})"
    return SerbenchError(f"cannot {action} {what} {path}: {why}{_hint(exc, path)}")


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def makedirs(folder: str | Path, what: str = "folder") -> Path:
    """``mkdir -p folder``; an ``OSError`` becomes a :class:`SerbenchError` naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise SerbenchError(f"cannot create {what} {folder}: a file of that name is in the way") from exc
    except OSError as exc:
        raise error(exc, folder, what, "create") from exc
    return folder


@contextmanager
def writing(path: str | Path, what: str = "file") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, fsync it and
    rename it to ``path``. On any error the temporary is removed; an ``OSError`` is raised as a
    :class:`SerbenchError` naming ``what`` and ``path``. A folder at ``path`` is refused first."""
    path = Path(path)
    if path.is_dir():
        raise SerbenchError(f"cannot write {what} {path}: it is a folder, not a file")
    makedirs(path.parent, f"the folder for {what}")
    tmp = temp_name(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise error(exc, path, what) from exc
    except BaseException:
        _remove(tmp)
        raise


def write_bytes(path: str | Path, data: bytes | str, what: str = "file") -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` atomically (see :func:`writing`); returns ``path``."""
    payload = data.encode() if isinstance(data, str) else bytes(data)
    with writing(path, what) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)
    return Path(path)


write_text = write_bytes


@contextmanager
def folder(path: str | Path, what: str = "folder", replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; when the block ends without error its
    files are fsynced and it is renamed to ``path``. With ``replace`` an existing ``path`` is
    swapped out (kept until the new one is in place, restored if that fails). On any error the
    temporary folder is removed; an ``OSError`` is raised as a :class:`SerbenchError`."""
    path = Path(path)
    makedirs(path.parent, f"the folder for {what}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    old = path.with_name(f".{path.name}.{os.getpid()}.old.tmp")
    _remove(tmp)
    try:
        tmp.mkdir()
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file() and not f.is_symlink():
                _fsync(f)
        if path.exists():
            if not replace:
                raise SerbenchError(f"{path} appeared while it was being written; not replacing it")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            _remove(old)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        if exc.filename and str(exc.filename).startswith(str(tmp)):  # name the file, not the temporary
            exc.filename = str(path) + str(exc.filename)[len(str(tmp)):]
        raise error(exc, path, what) from exc
    finally:
        _remove(tmp)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
