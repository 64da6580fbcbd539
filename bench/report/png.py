"""Saving a report's figure as a PNG file, atomically."""

from __future__ import annotations

from pathlib import Path

from bench.atomic import atomic_write

DPI = 120


def save_png(fig, path: Path) -> Path:
    """Write `fig` to `path` as a PNG (DPI dots per inch, tight bounding box); returns `path`."""
    atomic_write(
        path, lambda f: fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    )
    return path
