"""How the Table 1 reports write numbers, weights and Markdown tables."""

from __future__ import annotations

import math

STAGE_WORDS = {"select": "selection (valid) images", "test": "test images"}


def num(v: float, digits: int) -> str:
    """A value with `digits` decimals: '—' for none or NaN, '+inf' / '-inf' for infinities."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return f"{v:.{digits}f}"


def _exact_text(k: int, n: int) -> str:
    """'all 4 images exact' or '3/4 images exact'."""
    return f"all {n} images exact" if k == n else f"{k}/{n} images exact"


def psnr_text(rec) -> str:
    """A summary row's mean PSNR with its 95% interval; a mean that includes exact images
    (PSNR +inf) is '+inf (3/4 images exact, interval undefined)'."""
    if rec.n_exact:
        return f"+inf ({_exact_text(int(rec.n_exact), int(rec.n))}, interval undefined)"
    return pm(rec.psnr, rec.psnr_ci, 2)


def paper_psnr_text(rec) -> str:
    """A summary row's paper-convention PSNR; +inf names the batches whose pooled MSE is 0."""
    if rec.paper_exact:
        return f"+inf (pooled MSE 0 in {int(rec.paper_exact)}/{int(rec.paper_batches)} batches)"
    return num(rec.paper_psnr, 2)


def pm(mean: float, half: float, digits: int) -> str:
    """'mean ± half-width'; the mean alone when the half-width is NaN or the mean infinite."""
    if math.isnan(half) or math.isinf(mean):
        return num(mean, digits)
    return f"{num(mean, digits)} ± {num(half, digits)}"


def format_weight(w) -> str:
    """A weight as the run names write it (`bench.methods.format_weight`: '0.01', '1e-05'),
    or '—' for no weight (None or NaN)."""
    if w is None or (isinstance(w, float) and math.isnan(w)):
        return "—"
    from bench.methods import base

    return base.format_weight(w)


def weight_text(symbol: str | None, w) -> str:
    """'γ = 0.1' (the weight's symbol, `bench.report.declared.weight_symbol`, and value), or
    'no weight' for a method without one ('' or None)."""
    if not symbol:
        return "no weight"
    return f"{symbol} = {format_weight(w)}"


def md_table(header: list[str], body: list[list[str]]) -> str:
    """A Markdown table (header row, separator, one row per list of cell texts)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)
