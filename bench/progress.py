"""Progress bars: every bar of the harness is made by `bar` here.

A bar is drawn only when it is asked for (`--progress`, the commands' default) and its stream
(stderr) is a terminal: redirected to a file or a pipe, a tqdm bar would fill the log with
carriage returns and escape codes, so there none is drawn (the commands' one-line messages
still are)."""

from __future__ import annotations

import sys


def enabled(progress: bool = True, file=None) -> bool:
    """Whether a bar is drawn: `progress` asked for it and `file` (default stderr) is a
    terminal."""
    stream = sys.stderr if file is None else file
    try:
        return bool(progress) and bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def bar(iterable=None, *, progress: bool = True, file=None, **tqdm_kwargs):
    """A tqdm bar on `file` (default: stderr at the time of the call), disabled (it draws
    nothing, but counts and closes as usual) unless `enabled(progress, file)`. Keyword
    arguments go to tqdm (total, desc, unit, leave, initial, ...)."""
    from tqdm.auto import tqdm

    stream = sys.stderr if file is None else file
    tqdm_kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, file=stream, disable=not enabled(progress, stream), **tqdm_kwargs)
