"""How strong the evidence behind a verdict is: a flow too small to stand for the paper's
prior, and verdicts withheld ('not meaningful at this size') when the evidence falls short."""

from __future__ import annotations

from bench.findings.constants import MIN_FLOW_EPOCHS, MIN_FLOW_WIDTH, NOT_MEANINGFUL, SMOKE_PRESET


def flow_shortfalls(model: dict | None, preset: str | None = None) -> list[str]:
    """Why a flow is too small to stand for the paper's prior ([] when it is not): trained
    with the smoke preset (`preset`: the run's preset name, or the flow's own), for fewer than
    MIN_FLOW_EPOCHS epochs, narrower than MIN_FLOW_WIDTH, or with either not recorded."""
    model = model or {}
    if SMOKE_PRESET in (preset, model.get("preset")):
        return ["smoke flow"]
    out = []
    epochs, width = model.get("epochs"), model.get("hidden")
    if not isinstance(epochs, int | float):
        out.append("the flow's training epochs are not recorded")
    elif epochs < MIN_FLOW_EPOCHS:
        out.append(f"flow trained {epochs:g} epoch(s) < {MIN_FLOW_EPOCHS}")
    if not isinstance(width, int | float):
        out.append("the flow's width is not recorded")
    elif width < MIN_FLOW_WIDTH:
        out.append(f"flow width {width:g} < {MIN_FLOW_WIDTH}")
    return out


def flow_words(model: dict | None) -> str:
    """'flow of 24 epoch(s) at width 128' (what the evidence rests on)."""
    model = model or {}
    epochs, width = model.get("epochs"), model.get("hidden")
    return (
        f"flow of {'?' if epochs is None else epochs} epoch(s) at width "
        f"{'?' if width is None else width}"
    )


def decides(verdict: str) -> bool:
    """Whether a verdict says something of the claim (supported, contradicted, unresolved,
    ...); 'undetermined' (undefined numbers) and 'not run'/'not measured' already say none."""
    return not verdict.startswith(("undetermined", "not run", "not measured"))


def withheld(verdict: str, shortfalls: list[str]) -> str:
    """The verdict, or 'not meaningful at this size (why)' when the evidence falls short."""
    if shortfalls and decides(verdict):
        return f"{NOT_MEANINGFUL} ({'; '.join(shortfalls)})"
    return verdict
