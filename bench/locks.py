"""Single-writer locks on shared state (checkpoints, runs, reports, timing and perf results).

A lock is an advisory `flock` on a file ``<target>.lock`` (for a folder: ``<folder>/.lock``)
that holds the writer's pid, for the messages. The kernel releases the lock when its process
ends, however it ends, so a lock left by a killed process is taken over at once, a reused
pid is never mistaken for a live writer, and two processes starting at the same moment cannot
both win. A second live writer is refused with a one-line error naming the holder's pid.
Targets are resolved first, so a symlink to a checkpoint locks the checkpoint itself.
(POSIX only, like the rest of the harness's process handling; on filesystems without
`flock` support the lock degrades to what the filesystem offers.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from pathlib import Path

from bench.errors import BenchError, WriteError

LOCK_NAME = ".lock"
_HELD: dict[Path, list[int]] = {}  # lock file -> [fd, depth] held by this process


def lock_path(target: str | Path) -> Path:
    """Where the lock of `target` lives: `<folder>/.lock` for a folder (or a path without a
    suffix that does not exist yet), `<file>.lock` beside a file; symlinks resolved."""
    target = Path(target).resolve()
    # one stat, not is_dir() then exists(): a folder created by another writer between the two
    # would read as neither, and the two writers would lock two different files
    try:
        is_dir, exists = stat.S_ISDIR(target.stat().st_mode), True
    except FileNotFoundError:
        is_dir, exists = False, False
    if is_dir or (not exists and not target.suffix):
        return target / LOCK_NAME
    return target.with_name(target.name + ".lock")


def _holder(fd: int) -> str:
    """The pid written in a lock file held by someone else (it may still be writing it)."""
    for _ in range(20):
        try:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        except OSError:
            text = ""
        if text:
            return text
        time.sleep(0.01)
    return "unknown"


def acquire(target: str | Path, what: str = "bench command") -> Path:
    """Take the lock of `target` for this process and return the lock file (re-entrant
    within a process).

    Raises BenchError naming the holder's pid when another live process holds it, and
    WriteError when the lock file cannot be created or written (read-only folder, permission
    denied, no space left, a file in the way)."""
    lock = lock_path(target)
    if lock in _HELD:
        _HELD[lock][1] += 1
        return lock
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError.from_os_error(e, lock.parent) from None
    for _ in range(10):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise WriteError.from_os_error(e, lock) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            raise BenchError(
                f"another {what} (pid {pid}) is writing {target}: wait for it to finish or "
                "stop it, then rerun (the lock goes with the process that holds it)"
            ) from None
        try:  # a releasing writer unlinks the file: ours must still be the one at the path
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)
            raise WriteError.from_os_error(e, lock) from None
        _HELD[lock] = [fd, 1]
        return lock
    raise BenchError(f"could not lock {target}: remove {lock} and rerun")


def release(lock: Path | None) -> None:
    """Release a lock this process holds (the file is removed while still locked)."""
    if lock is None or lock not in _HELD:
        return
    held = _HELD[lock]
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[lock]
    with contextlib.suppress(OSError):
        os.unlink(lock)
    with contextlib.suppress(OSError):
        os.close(held[0])


@contextlib.contextmanager
def holding(target: str | Path, what: str = "bench command"):
    """`with holding(path):` — the block runs as the only writer of `path`."""
    lock = acquire(target, what)
    try:
        yield lock
    finally:
        release(lock)
