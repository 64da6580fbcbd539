"""What a command writes to stdout: the command line it names in report headers, and a stdout
that survives its reader (`bench ... | head -1`)."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import sys


class _DropAfterClose(io.RawIOBase):
    """Writes to the file descriptor `fd` (stdout) until its reader has gone (a closed pipe,
    `bench ... | head -1`); then points `fd` at os.devnull, so that this write, every later
    one (ours, and the interpreter's final flush of the original sys.stdout) and the work
    itself go on as if nothing happened."""

    def __init__(self, fd: int):
        super().__init__()
        self._fd = fd
        self.discard = False  # set: drop every write (what is left once the command ended)

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, b) -> int:
        if self.discard:
            return memoryview(b).nbytes
        try:
            return os.write(self._fd, b)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._fd)
            finally:
                os.close(devnull)
            return memoryview(b).nbytes


@contextlib.contextmanager
def stdout_survives_its_reader():
    """For the duration of a command, a closed stdout (its reader gone) never stops or fails
    the work: output after that is dropped silently. sys.stdout is replaced by a text stream
    of the same encoding over `_DropAfterClose`, so that every writer (click.echo, which
    wraps `sys.stdout` or its `.buffer` as it finds them at each call, and print) goes through
    it. Only the process's real stdout is guarded (not a test runner's capture)."""
    real = sys.stdout
    try:
        fd = real.fileno() if real is not None and real is sys.__stdout__ else None
    except (OSError, ValueError):
        fd = None
    if fd is None:
        yield
        return
    with contextlib.suppress(BrokenPipeError):
        real.flush()
    raw = _DropAfterClose(fd)
    guarded = io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding=real.encoding,
        errors=real.errors,
        line_buffering=real.line_buffering,
        write_through=getattr(real, "write_through", False),
    )
    sys.stdout = guarded
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError, ValueError):  # the error in flight is the one to say
            guarded.flush()
        raise
    else:
        guarded.flush()  # another failure than a closed pipe (a full disk) is an error
    finally:
        if sys.stdout is guarded:
            sys.stdout = real
        # what a failed write left buffered is dropped, never retried when the interpreter
        # collects the stream (a second error, after the one already said)
        raw.discard = True


def command_line() -> str:
    """The exact command that is running, for report headers; --replace, which only
    authorises the write and changes nothing in it, is left out (so that the line remakes
    the same file once it is there). Plugins named by BENCH_PLUGINS lead it
    (``BENCH_PLUGINS=... bench ...``): the command does not work without them."""
    import os

    from bench.plugins import PLUGINS_ENV

    args = [a for a in sys.argv[1:] if a != "--replace"]
    env = os.environ.get(PLUGINS_ENV, "").strip()
    lead = f"{PLUGINS_ENV}={shlex.quote(env)} " if env else ""
    return lead + "bench " + " ".join(shlex.quote(a) for a in args)
