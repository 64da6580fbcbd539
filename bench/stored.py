"""Reading back the files the harness stores (results CSVs, JSON manifests and metadata, NumPy
arrays) without trusting them.

Every file under results/ may have been truncated, edited by hand, copied from another version
or replaced by something else entirely. The readers here turn any such file into one
:class:`bench.errors.BenchError` line that names the file, what is wrong with it and the fix
(usually: delete it and rerun the command that wrote it), never a traceback; and nothing they
load can execute code: JSON through :mod:`json`, CSV through pandas' parser, arrays through
``np.load(..., allow_pickle=False)`` (no pickle anywhere).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bench.errors import BenchError

# what a reader may raise on a damaged file (UnicodeDecodeError and json's JSONDecodeError are
# ValueErrors; RecursionError: absurdly nested JSON)
_READ_ERRORS = (ValueError, OSError, EOFError, RecursionError, zipfile.BadZipFile, zlib.error)


def malformed(path: str | Path, problem: str, fix: str) -> BenchError:
    """The one-line error for a stored file that cannot be used: '<path> <problem>: <fix>'."""
    return BenchError(f"{path} {problem}: {fix}")


def _why(e: BaseException) -> str:
    if isinstance(e, UnicodeDecodeError):
        return "is not UTF-8 text"
    if isinstance(e, json.JSONDecodeError):
        return f"is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
    if isinstance(e, RecursionError):
        return "is nested too deeply to be one of our files"
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"is unreadable ({type(e).__name__}{': ' + first[:120] if first else ''})"


def read_json_object(path: str | Path, fix: str, required: Iterable[str] = ()) -> dict:
    """A JSON file that must hold an object (a dict) with the `required` keys.

    Raises BenchError '<path> ...: <fix>' when the file is missing, unreadable, not UTF-8, not
    valid JSON, not an object, or lacks a required key."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise malformed(path, "is missing", fix) from None
    except _READ_ERRORS as e:
        raise malformed(path, _why(e), fix) from None
    if not isinstance(value, dict):
        raise malformed(path, f"holds a JSON {_json_type(value)}, not an object", fix)
    missing = [k for k in required if k not in value]
    if missing:
        raise malformed(path, f"lacks the key(s) {', '.join(map(repr, missing))}", fix)
    return value


def _json_type(value) -> str:
    for kind, name in ((list, "list"), (str, "string"), (bool, "boolean"), (type(None), "null")):
        if isinstance(value, kind):
            return name
    return "number" if isinstance(value, (int, float)) else type(value).__name__


def read_csv(path: str | Path, fix: str, required: Iterable[str] = (), **kwargs):
    """A CSV file as a pandas DataFrame with at least the `required` columns (UTF-8; pandas'
    parser: nothing in it is executed).

    Raises BenchError '<path> ...: <fix>' when the file is missing, unreadable, not UTF-8,
    empty, unparsable, or lacks a required column."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path, encoding="utf-8", **kwargs)
    except FileNotFoundError:
        raise malformed(path, "is missing", fix) from None
    except pd.errors.EmptyDataError:
        raise malformed(path, "is empty", fix) from None
    except (pd.errors.ParserError, *_READ_ERRORS) as e:
        raise malformed(path, _why(e), fix) from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise malformed(path, f"lacks the column(s) {', '.join(missing)}", fix)
    return frame


def numeric(frame, column: str, path: str | Path, fix: str, *, allow_nan: bool = True):
    """`frame[column]` as float64; raises BenchError naming the file when a value is not a
    number (an empty field is NaN, which `allow_nan=False` refuses)."""
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    bad = values.isna() & ~frame[column].isna()
    if bad.any():
        first = frame[column][bad].iloc[0]
        raise malformed(path, f"has a non-number {str(first)[:40]!r} in column {column}", fix)
    if not allow_nan and values.isna().any():
        raise malformed(path, f"has an empty value in column {column}", fix)
    return values


_TRUE = {"true", "1", "1.0"}
_FALSE = {"false", "0", "0.0"}


def boolean(frame, column: str, path: str | Path, fix: str):
    """`frame[column]` as bool, read strictly: True/False (any case) or 1/0. An empty or other
    value raises BenchError naming the file (``astype(bool)`` would read 'False', an empty
    field or a truncated 'Fal' as True)."""
    col = frame[column]
    if col.dtype == bool:
        return col.astype(bool)
    text = col.astype("string").fillna("").str.strip().str.lower()
    ok = text.isin(_TRUE | _FALSE)
    if not ok.all():
        first = text[~ok].iloc[0]
        what = f"{str(col[~ok].iloc[0])[:40]!r}" if first else "an empty value"
        raise malformed(path, f"has {what} in column {column} (expected True or False)", fix)
    return text.isin(_TRUE)


def _np_load(path: Path, fix: str):
    """`np.load` without pickle; a missing or unreadable file is a BenchError."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise malformed(path, "is missing", fix) from None
    except _READ_ERRORS as e:
        raise malformed(path, _why(e), fix) from None


def load_array(path: str | Path, fix: str) -> np.ndarray:
    """One array from a .npy file, without pickle (object arrays are refused).

    Raises BenchError '<path> ...: <fix>' when the file is missing, truncated, not a .npy
    file, or needs pickle."""
    path = Path(path)
    value = _np_load(path, fix)
    if not isinstance(value, np.ndarray):  # an .npz archive under an .npy name
        close = getattr(value, "close", None)
        if close is not None:
            close()
        raise malformed(path, "is not a single NumPy array", fix)
    return value


def load_arrays(path: str | Path, fix: str, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The arrays `names` of a .npz archive, without pickle.

    Raises BenchError '<path> ...: <fix>' when the file is missing, truncated, not an .npz
    archive, lacks one of `names`, or holds an object array (which needs pickle)."""
    path, names = Path(path), list(names)
    archive = _np_load(path, fix)
    if not hasattr(archive, "files"):  # a single .npy array under an .npz name
        raise malformed(path, "is not a NumPy .npz archive", fix)
    out = {}
    with archive as z:
        missing = [n for n in names if n not in z.files]
        if missing:
            raise malformed(path, f"lacks the array(s) {', '.join(missing)}", fix)
        try:
            for n in names:
                out[n] = np.asarray(z[n])
        except _READ_ERRORS as e:  # a truncated member, or an object array (needs pickle)
            raise malformed(path, _why(e), fix) from None
    return out


# ---- the Table 1 store (bench.runner) ----------------------------------------------------------
def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _dict_of(v, check) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())


def _opt_str(v) -> bool:
    return v is None or isinstance(v, str)


def _images_ok(v) -> bool:
    return v is None or (
        isinstance(v, dict)
        and isinstance(v.get("label"), str)
        and _is_int(v.get("count"))
        and isinstance(v.get("skipped", []), list)
    )


def _selection_ok(v) -> bool:
    return (
        isinstance(v, dict)
        and (v.get("weight") is None or _is_number(v.get("weight")))
        and isinstance(v.get("source", ""), str)
        and isinstance(v.get("failed", False), bool)
    )


def _model_ok(v) -> bool:
    return isinstance(v, dict) and (v.get("num_params") is None or _is_int(v.get("num_params")))


# key -> (check, what it must be); the keys every reader indexes directly are required
MANIFEST_REQUIRED = {
    "run_id": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "dataset": (lambda v: isinstance(v, str), "a string"),
    "methods": (_str_list, "a list of method names"),
    "tasks": (_str_list, "a list of task names"),
    "preset": (
        lambda v: (
            isinstance(v, dict)
            and isinstance(v.get("name"), str)
            and all(k in v for k in ("hidden", "epochs", "test_images", "select_images", "iters"))
        ),
        "an object with name, hidden, epochs, test_images, select_images and iters",
    ),
    "iters": (_is_int, "an integer"),
    "seed": (_is_int, "an integer"),
}
MANIFEST_OPTIONAL = {
    "selection": (
        lambda v: _dict_of(v, lambda d: _dict_of(d, _selection_ok)),
        "{method: {task: {weight, source, failed}}}",
    ),
    "skipped": (lambda v: _dict_of(v, lambda d: _dict_of(d, _opt_str)), "{method: {task: why}}"),
    "labels": (lambda v: _dict_of(v, lambda d: _dict_of(d, _opt_str)), "{method: {weight: name}}"),
    "grids": (
        lambda v: _dict_of(
            v, lambda g: isinstance(g, list) and all(w is None or _is_number(w) for w in g)
        ),
        "{method: [weights]}",
    ),
    "weight_names": (lambda v: _dict_of(v, _opt_str), "{method: weight name}"),
    "method_labels": (lambda v: _dict_of(v, _opt_str), "{method: label}"),
    "test_images": (_images_ok, "an object with label and count"),
    "select_images": (_images_ok, "null or an object with label and count"),
    "model": (_model_ok, "an object (num_params an integer)"),
    "key": (lambda v: isinstance(v, dict), "an object"),
    "commands": (_str_list, "a list of commands"),
    "command": (_opt_str, "a string"),
    "select_on": (_opt_str, "a string"),
    "weights": (_opt_str, "a string"),
    "complete": (lambda v: isinstance(v, bool), "true or false"),
}


def manifest_problem(man: dict) -> str | None:
    """What is wrong with a run's manifest (already a JSON object), or None: a required key
    missing, or a key of the wrong type (see MANIFEST_REQUIRED and MANIFEST_OPTIONAL)."""
    for key, (check, what) in MANIFEST_REQUIRED.items():
        if key not in man:
            return f"lacks the key {key!r}"
        if not check(man[key]):
            return f"has a {key!r} that is not {what}"
    for key, (check, what) in MANIFEST_OPTIONAL.items():
        if key in man and not check(man[key]):
            return f"has a {key!r} that is not {what}"
    return None


CELL_REQUIRED = (
    "stage", "method", "task", "weight", "image", "index", "psnr", "ssim", "mse5", "diverged",
)  # fmt: skip


def cell_fix(path: Path) -> str:
    """The fix for a damaged file of a stored cell (its .csv rows or .npy images): delete it
    and its companion, then rerun."""
    other = path.with_suffix(".csv" if path.suffix == ".npy" else ".npy")
    return (
        f"delete it and {other.name} beside it, then rerun the `bench run` command (the cell "
        "is recomputed)"
    )


def read_cell_csv(path: str | Path, stage: str):
    """One stored cell's rows, checked: the columns the readers use (CELL_REQUIRED) present,
    at least one row, every row of stage `stage`, one row per image, 'diverged' a strict bool,
    'weight' (NaN: no weight), 'index' and the metrics numbers. On a row not marked diverged
    PSNR may be +inf (an exact restoration) but not NaN or -inf, and SSIM and MSE5 are finite;
    a diverged row's metrics are NaN. Returns a pandas DataFrame ('diverged' bool, 'weight'
    and metrics float64). Raises BenchError naming the file and the fix."""
    path = Path(path)
    fix = cell_fix(path)
    frame = read_csv(path, fix, CELL_REQUIRED)
    if len(frame) == 0:
        raise malformed(path, "has no rows", fix)
    frame["diverged"] = boolean(frame, "diverged", path, fix)
    for col in ("weight", "psnr", "ssim", "mse5"):
        frame[col] = numeric(frame, col, path, fix)
    index = numeric(frame, "index", path, fix, allow_nan=False)
    if not (np.isfinite(index) & (index == np.round(index))).all():
        raise malformed(path, "has a non-integer image index", fix)
    frame["index"] = index.astype(np.int64)
    for col in ("stage", "method", "task", "image"):
        if frame[col].isna().any():
            raise malformed(path, f"has an empty value in column {col}", fix)
    if not (frame["stage"].astype(str) == stage).all():
        raise malformed(path, f"holds rows of another stage than {stage!r}", fix)
    if frame["image"].astype(str).duplicated().any():
        raise malformed(path, "holds an image twice", fix)
    ok = ~frame["diverged"]
    psnr = frame.loc[ok, "psnr"].to_numpy(np.float64)
    if np.isnan(psnr).any() or (psnr == -np.inf).any():
        raise malformed(
            path, "has a NaN or -inf PSNR on a row not marked diverged (only +inf is valid)", fix
        )
    for col in ("ssim", "mse5"):
        if not np.isfinite(frame.loc[ok, col].to_numpy(np.float64)).all():
            raise malformed(path, f"has a non-finite {col} on a row not marked diverged", fix)
    return frame
