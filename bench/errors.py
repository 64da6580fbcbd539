"""User-facing errors: the CLI prints them as one line (`error: ...`) and exits with code 2."""


class BenchError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class DataError(BenchError):
    """Missing, empty, corrupt or wrongly laid out image data."""


class CheckpointError(BenchError):
    """A checkpoint that is missing or does not match what was asked for."""
