"""The paper's claims, the released-code defects and the ablation steps that `bench.findings`
tests: statements about named methods of the paper (PROTOCOL §5, §8), so they are keyed by
those names. What a method or task is (labels, weight symbols, figure numbers) is declared on
the method or task itself (`bench.report.declared`)."""

from __future__ import annotations

from dataclasses import dataclass

# ---- claims (bench.findings) -------------------------------------------------------------------
TABLE1_TASKS = ("denoising", "deblurring", "inpainting")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: method `a` against method `b` on each task of `tasks`."""

    key: str
    text: str
    a: str
    b: str
    tasks: tuple[str, ...]
    kind: str = "better"  # or "tie"


CLAIMS = (
    Claim("ours>csgm", "the solver beats CSGM (denoising, deblurring, inpainting)", "ours",
          "csgm", TABLE1_TASKS),
    Claim("ours>glowip", "the solver beats GlowIP (denoising, deblurring, inpainting)", "ours",
          "glowip", TABLE1_TASKS),
    Claim("ours=glowip", "the solver ties GlowIP on colorization", "ours", "glowip",
          ("colorization",), kind="tie"),
    Claim("ours>bm3d", "the solver beats BM3D on denoising", "ours", "bm3d", ("denoising",)),
    Claim("ours>map", "the solver beats MAP on denoising", "ours", "map", ("denoising",)),
)  # fmt: skip

# released-code variants (PROTOCOL §8) against the method they corrupt, on every task they ran
DEFECTS = (
    ("map-released", "map", "MAP's loss subtracts −β log p (rewards unlikely images)"),
    ("ours-released", "ours", "the solver's likelihood weight α is zeroed (pure L1 fit)"),
)


# ablation: which ingredient of the solver makes the difference to GlowIP (a − b per task)
ABLATION = (
    ("l1-z0", "glowip", "the data term: L1 instead of squared L2 (both from z₀ = 0, no prior)"),
    ("ours-released", "l1-z0", "the initial latent: z₀ ~ N(0, 0.1² I) instead of 0 (L1, no prior)"),
    ("ours", "ours-released", "the prior term: α·L(z) at the selected α instead of α = 0"),
)
