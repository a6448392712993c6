"""Crash-safe file and folder writes shared by datasets and checkpoints."""

from __future__ import annotations

import errno
import glob
import os
import re
import secrets
import shutil
from pathlib import Path

# Why a folder cannot be written, by errno, in words a user can act on.
_CANNOT_WRITE = {
    errno.EACCES: "you have no write permission there",
    errno.EPERM: "you have no write permission there",
    errno.EROFS: "it is on a read-only file system",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "your disk quota is used up",
}


class NotWritable(RuntimeError):
    """A folder something must be written to cannot be written."""


def check_writable(folder: Path, what: str, remedy: str) -> None:
    """Checks, before the work whose result goes into `folder`, that it can be written: a probe
    file is created and removed in the nearest folder that exists (`folder` or a parent), so a
    refused check leaves nothing on disk. Raises NotWritable, one line: which folder, why, and
    `remedy` (what to do)."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        fd, probe = _create_temporary(existing / "write-check")
        os.close(fd)
        probe.unlink()
    except OSError as err:
        why = _CANNOT_WRITE.get(err.errno, err.strerror or str(err))
        where = str(existing) if existing == folder else f"{existing}, where {folder} would be made,"
        raise NotWritable(f"cannot write {what}: {where} is not writable ({why}); {remedy}") from None
# What to do about a failed write, by its errno; any other OSError gets its own strerror only.
WRITE_HINTS = {
    errno.ENOSPC: "the disk is full: free space on it",
    errno.EDQUOT: "your disk quota is used up: free space in it",
    errno.EFBIG: "the file is larger than its file system or the file size limit (`ulimit -f`) allows: raise the limit",
    errno.EACCES: "you have no write permission there: get it",
    errno.EROFS: "the file system is read-only: make it writable",
}


class WriteError(OSError):
    """A file could not be written (full disk, file-size limit, read-only folder, ...).

    str() is one line: the file, the cause, what to do about it and, when the writer knows it,
    what to run afterwards (`then`). An OSError, so code that handles OSError still does.
    """

    def __init__(self, path: str | os.PathLike, err: OSError, then: str = ""):
        super().__init__(err.errno, err.strerror or str(err), str(path))
        self.then = then

    def __str__(self) -> str:
        line = f"cannot write {self.filename} ({self.strerror}); {WRITE_HINTS.get(self.errno, 'fix that')}"
        return f"{line}, then {self.then}" if self.then else line


def fsync_dir(path: Path) -> None:
    """Makes renames inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """Create a fresh temporary file next to `path` (same folder, so the rename stays atomic).

    Not tempfile.mkstemp: it makes 0600 files, and manifests, checkpoints and critic files in a
    cache shared with colleagues would be unreadable to them; os.open with 0666 gives the mode a
    plain open() gives (0666 & ~umask), as the dataset shards get.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}; remove the .{path.name}.*.tmp files there")


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporaries of `path` that writes killed part way left (one process writes a
    given file at a time, so no other write of it is under way)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.tmp")
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if pattern.fullmatch(stale.name):
            stale.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, fsync, then rename over `path`, so a
    reader sees the old file or the new one, never a partial one. The file gets the mode a
    plain open() would give (0666 & ~umask). A failed write raises WriteError naming `path`;
    temporaries of `path` left by a write that was killed are removed."""
    try:
        _remove_stale_temporaries(path)
        fd, tmp = _create_temporary(path)
    except OSError as err:
        raise WriteError(path, err) from err
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise WriteError(path, err) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def replace_dir_atomic(new: Path, target: Path, previous: Path) -> None:
    """Put the finished folder `new` at `target` by renames, so that a kill at any instant leaves
    a complete folder at `target`, or at `previous` (the folder `target` held before) while the
    new one is not in place yet. `previous` is deleted only once `new` is durably at `target`.
    All three paths must lie in the same folder."""
    parent = target.parent
    if target.exists():
        # without `target`, an existing `previous` is the only complete copy: keep it until the end
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(target, previous)
        fsync_dir(parent)
    os.replace(new, target)
    fsync_dir(parent)
    if previous.exists():
        shutil.rmtree(previous)
