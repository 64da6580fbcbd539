"""Atomic file writes: every result, report, checkpoint and cache goes through here, so a
reader never sees a partial file and an interruption leaves the old file (or none).

A failure to create the folder, write the temporary file or replace the target (read-only
filesystem, permission denied, no space left, a file in the way) raises
`bench.errors.WriteError`: one line naming the path, the problem and the fix; the file that
was there before is left intact and no temporary file remains."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.errors import WriteError


def _file_mode() -> int:
    """0o666 less the process umask (mkstemp creates 0o600 files)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()
_STAGED: list[tuple[str, Path]] | None = None  # (temporary file, target) of an open file set


@contextlib.contextmanager
def all_or_nothing():
    """`with all_or_nothing():` — every `atomic_write` inside the block writes its temporary
    file only; the targets are replaced together when the block ends without an error, and
    none is when anything fails (a full disk half-way through a report set leaves the old set
    whole). Writing needs the space, replacing does not. Nested blocks join the outer one."""
    global _STAGED
    if _STAGED is not None:
        yield
        return
    _STAGED = []
    try:
        yield
    except BaseException:
        for tmp, _ in _STAGED:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    else:
        staged, _STAGED = _STAGED, None
        for i, (tmp, path) in enumerate(staged):
            try:
                os.replace(tmp, path)
            except OSError as e:
                for later, _ in staged[i:]:
                    with contextlib.suppress(OSError):
                        os.unlink(later)
                raise WriteError.from_os_error(e, path) from None
    finally:
        _STAGED = None


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call `write(f)` on a temporary file in the same folder, then os.replace it to `path`."""
    path = Path(path)
    if path.is_symlink():  # replace the file the link points to, not the link
        path = path.resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise WriteError.from_os_error(e, path) from None
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.chmod(tmp, _FILE_MODE)
        if _STAGED is not None:
            _STAGED.append((tmp, path))
            return path
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise WriteError.from_os_error(e, path) from None
        if isinstance(e, RuntimeError) and _is_write_failure(e):
            # torch.save wraps a failed write (a full disk) in a RuntimeError
            raise WriteError(
                f"cannot write {path}: the write failed ({_first_line(e)}; the disk may be "
                "full: free some space or pass another folder); what was there before is "
                "unchanged and finished work is kept"
            ) from None
        raise
    return path


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:120] if text else type(e).__name__


def _is_write_failure(e: RuntimeError) -> bool:
    text = str(e)
    return any(k in text for k in ("inline_container", "PytorchStreamWriter", "file write failed"))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")
