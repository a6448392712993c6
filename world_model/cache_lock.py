"""One process at a time builds a cache entry (a dataset, a world model's run folder, a fitted module).

The builder holds an exclusive lock (fcntl.flock) on `<entry>.lock`, a small file beside the entry's
folder, while it builds, and writes into it who it is (pid, host, command). A second process that
needs the same entry (a hydra multirun, a Slurm array, two terminals on one cache) waits for the
lock, saying whose it is, and then finds the entry finished and reuses it, so it ends with the
outputs a single run would have; if the holder was killed, the waiter continues its work (the entry
resumes as it would for a rerun). The operating system releases the lock when its holder exits,
however it exits, so a kill never leaves a stale lock. The lock files stay (removing one could let a
third process lock a new file while a second holds the old one); they are empty but for the last
holder's line. On NFS, flock works between machines with Linux clients from 2.6.12 (it is emulated
with byte-range locks).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from world_model.atomic import WriteError


class EntryBusy(RuntimeError):
    """Another process is building the cache entry, and this one was asked not to wait."""


def lock_path(folder: Path) -> Path:
    """The lock file of the cache entry at `folder`: `<folder>.lock`, beside it."""
    folder = Path(folder)
    return folder.with_name(folder.name + ".lock")


def _holder(fd: int) -> str:
    """Who holds the lock, in words, from what it wrote into the lock file."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"null")
        return f"process {holder['pid']} on {holder['host']} (`{holder['command']}`, since {holder['since']})"
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError):
        return "another process"  # it has the lock but has not written its line yet


@contextmanager
def building(folder: Path, what: str, wait: bool = True) -> Iterator[None]:
    """Holds the lock of the cache entry at `folder` (`what`, for the messages) for the block.

    When another process holds it: wait=True prints one line naming the holder and blocks until it
    is released; wait=False raises EntryBusy, one line naming the holder. The block must check again
    whether the entry was finished meanwhile. A lock file that cannot be created raises WriteError.
    """
    path = lock_path(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise WriteError(path, err) from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise EntryBusy(f"{what} at {folder} is being built by {holder}; wait until it has finished, then run "
                                "the same command again (it reuses it)") from None
            print(f"waiting for {what} at {folder}: {holder} is building it", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        line = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(line).encode(), 0)
        except OSError as err:
            raise WriteError(path, err) from err
        yield
    finally:
        os.close(fd)  # releases the lock
