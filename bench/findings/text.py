"""How claims.md writes numbers and intervals: never a silent 'nan', signed differences, and
the counts of exact restorations (PSNR +inf) beside a difference."""

from __future__ import annotations

import math

from bench.findings.verdicts import infinite


def num(v: float, digits: int, sign: bool = False) -> str:
    """A value in a table: '12.34' (with `sign`: '+12.34'), '+inf', '-inf'; NaN is
    'undefined' (never a silent 'nan')."""
    if v is None or math.isnan(v):
        return "undefined"
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def signed(v: float, digits: int) -> str:
    """+1.23, +inf, -inf; NaN is 'undefined'."""
    return num(v, digits, sign=True)


def est(m: float, lo: float, hi: float, digits: int = 2) -> str:
    """'3.66 [3.36, 3.96]'; an undefined interval or value says so instead of 'nan'."""
    if math.isnan(m):
        return "undefined"
    if math.isnan(lo) or math.isnan(hi):
        return f"{num(m, digits)} [interval undefined]"
    return f"{num(m, digits)} [{num(lo, digits)}, {num(hi, digits)}]"


def count(v) -> int | None:
    """A recorded count (a CSV or JSON value), None when absent or not a finite number."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return int(x) if math.isfinite(x) else None


def exact_counts(r: dict) -> str:
    """' (exact: a 3/4, b 0/4)' when either side has +inf values, else ''."""
    if not (r.get("n_exact_a") or r.get("n_exact_b")):
        return ""
    return f" (exact: a {r['n_exact_a']}/{r['n']}, b {r['n_exact_b']}/{r['n']})"


def ci_text(r: dict, digits: int) -> str:
    if r is None:
        return "—"
    if infinite(r):
        return f"{signed(r['mean'], digits)} [interval undefined]{exact_counts(r)}"
    if math.isnan(r["mean"]):
        return "—"
    f = f"{{:+.{digits}f}}"
    return f"{f.format(r['mean'])} [{f.format(r['lo'])}, {f.format(r['hi'])}]" + exact_counts(r)


def boot_text(r: dict, digits: int) -> str:
    """A paired difference's BCa bootstrap interval, '[+0.12, +0.34]', or '—'."""
    if r is None or math.isnan(r["boot_lo"]):
        return "—"
    f = f"{{:+.{digits}f}}"
    return f"[{f.format(r['boot_lo'])}, {f.format(r['boot_hi'])}]"


def share_text(v: float) -> str:
    return "—" if v is None or math.isnan(v) else f"{v:.0%}"


def p_text(p: float) -> str:
    """A p-value: '3.2e-05' below 0.001, else '0.123'; NaN is '—'."""
    if math.isnan(p):
        return "—"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"
