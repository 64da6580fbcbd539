"""Single-writer locks on shared state (checkpoints, runs, reports, timing and perf results).

A lock is a file ``<target>.lock`` (for a folder: ``<folder>/.lock``) created exclusively and
holding the writer's pid. A second live writer is refused with a one-line error naming that
pid; a lock left by a process that is gone (killed, crashed) is taken over.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from bench.errors import BenchError, WriteError

LOCK_NAME = ".lock"


def lock_path(target: str | Path) -> Path:
    """Where the lock of `target` lives: `<folder>/.lock` for a folder (or a path without a
    suffix that does not exist yet), `<file>.lock` beside a file."""
    target = Path(target)
    if target.is_dir() or (not target.exists() and not target.suffix):
        return target / LOCK_NAME
    return target.with_name(target.name + ".lock")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def acquire(target: str | Path, what: str = "bench command") -> Path:
    """Take the lock of `target` for this process and return the lock file.

    Raises BenchError naming the pid when another live process holds it, and WriteError when
    the lock cannot be created (read-only folder, permission denied, a file in the way)."""
    lock = lock_path(target)
    me = os.getpid()
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError.from_os_error(e, lock.parent) from None
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != me and pid_alive(pid):
                raise BenchError(
                    f"another {what} (pid {pid}) is writing {target}: wait for it to finish "
                    f"or stop it, then rerun (a lock left by a dead process is taken over)"
                ) from None
            try:
                lock.unlink(missing_ok=True)  # stale: the process that wrote it is gone
            except OSError as e:
                raise WriteError.from_os_error(e, lock) from None
            continue
        except OSError as e:
            raise WriteError.from_os_error(e, lock) from None
        with os.fdopen(fd, "w") as f:
            f.write(str(me))
        return lock
    raise BenchError(f"could not lock {target}: remove {lock} and rerun")


def release(lock: Path | None) -> None:
    """Remove a lock this process holds (missing or unremovable locks are left alone: a
    later writer takes over a dead process's lock)."""
    if lock is None:
        return
    try:
        if lock.read_text().strip() == str(os.getpid()):
            lock.unlink()
    except OSError:
        pass


@contextlib.contextmanager
def holding(target: str | Path, what: str = "bench command"):
    """`with holding(path):` — the block runs as the only writer of `path`."""
    lock = acquire(target, what)
    try:
        yield lock
    finally:
        release(lock)
