"""User-facing errors: the CLI prints them as one line (`error: ...`) and exits with code 2."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class BenchError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class BenchWarning(UserWarning):
    """Something the user should know that does not stop the command; the CLI prints each
    distinct one once, as one line (`warning: ...`)."""


class DataError(BenchError):
    """Missing, empty, corrupt or wrongly laid out image data."""


class CheckpointError(BenchError):
    """A checkpoint that is missing or does not match what was asked for."""


_FIXES = {
    errno.EROFS: "the filesystem is read-only: pass a writable folder",
    errno.EACCES: "permission denied: fix the folder's permissions or pass a writable folder",
    errno.EPERM: "permission denied: fix the folder's permissions or pass a writable folder",
    errno.ENOSPC: "no space left on the device: free some space or pass another folder",
    errno.EDQUOT: "disk quota exceeded: free some space or pass another folder",
    errno.ENOTDIR: "a file is in the way of a folder: move that file or pass another path",
    errno.EEXIST: "a file is in the way of a folder: move that file or pass another path",
    errno.EISDIR: "a folder is in the way of a file: move that folder or pass another path",
    errno.ENAMETOOLONG: "the path is too long: pass a shorter one",
}


class WriteError(BenchError):
    """A file or folder that cannot be created, written or replaced (read-only filesystem,
    permission denied, no space left, a file in the way of a folder)."""

    @classmethod
    def from_os_error(
        cls, e: OSError, path: str | Path | None = None, verb: str = "write"
    ) -> WriteError:
        """One line naming the path, the problem and the fix. What was there before is intact
        (every writer replaces files atomically)."""
        where = path if path is not None else (e.filename or "?")
        fix = _FIXES.get(e.errno or -1)
        problem = e.strerror or os.strerror(e.errno or 0) or type(e).__name__
        if fix is None:
            fix = "check the path and rerun"
        return cls(
            f"cannot {verb} {Path(str(where))}: {problem} ({fix}); what was there before is "
            "unchanged and finished work is kept"
        )
