"""One training run per workdir: an exclusive OS lock on ``workdir/train.lock`` for the run's lifetime.

The lock is ``flock`` on an open file, so the kernel releases it whenever the
process ends, ``kill -9`` included: no stale lock is ever left to clean up.
The file holds the holder's host, pid and start time, which a refused run
reports. On network file systems ``flock`` works where the mount supports
locks (NFSv4 does; Lustre needs ``-o flock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

LOCK_FILE = "train.lock"


class WorkdirBusyError(RuntimeError):
    """Another training run holds the workdir; this one wrote nothing."""


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"host {info['host']}, pid {info['pid']}, since {info['since']}"
    except (OSError, ValueError, KeyError):
        return "a run that is starting"


@contextlib.contextmanager
def workdir_lock(workdir: str | Path) -> Iterator[Path]:
    """Hold ``workdir``'s lock for the scope; ``WorkdirBusyError`` names the holder when another run has it."""
    path = Path(workdir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirBusyError(
                f"workdir {workdir} is in use by another training run ({_holder(fd)}); wait for it to end or stop it, "
                "or choose another --workdir"
            ) from None
        info = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the lock


__all__ = ["LOCK_FILE", "WorkdirBusyError", "workdir_lock"]
