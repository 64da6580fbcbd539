"""Figure titles that fit: wrapped to the figure's width and given the height they take.

A title wider than its figure is clipped at both ends in the saved PNG (Figure 1 names the
exact command, which can be long); `wrap_title` breaks it into lines that fit, and
`text_height_in` says how much height those lines need, so that a figure can make room for
them above its axes instead of drawing over them."""

from __future__ import annotations

TITLE_MARGIN_IN = 0.1  # space kept free left and right of every title line, inches


def renderer_of(fig):
    """An Agg renderer of `fig` (attaching an Agg canvas to a bare Figure), to measure text."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    return fig.canvas.get_renderer()


def _width_px(renderer, text: str, fontsize: float) -> float:
    from matplotlib.font_manager import FontProperties

    w, _, _ = renderer.get_text_width_height_descent(
        text, FontProperties(size=fontsize), ismath=False
    )
    return w


def wrap_title(fig, text: str, fontsize: float, margin_in: float = TITLE_MARGIN_IN) -> str:
    """`text` with line breaks added so that every line, drawn at `fontsize`, fits the width
    of `fig` less `margin_in` on each side: at spaces, and inside a word (a long path) only
    where the word alone is wider than that. Its own line breaks are kept."""
    renderer = renderer_of(fig)
    limit = max(1.0, (fig.get_figwidth() - 2 * margin_in) * fig.dpi)

    def fits(s: str) -> bool:
        return _width_px(renderer, s, fontsize) <= limit

    def longest_prefix(word: str) -> int:  # at least one character per line
        lo, hi = 1, len(word)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(word[:mid]) else (lo, mid - 1)
        return lo

    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if fits(candidate):
                line = candidate
                continue
            if line:
                lines.append(line)
            while not fits(word):
                k = longest_prefix(word)
                lines.append(word[:k])
                word = word[k:]
            line = word
        lines.append(line)
    return "\n".join(lines)


def text_height_in(fig, text: str, fontsize: float) -> float:
    """The height, in inches, that `text` (its lines as given) takes when drawn in `fig`."""
    renderer = renderer_of(fig)
    probe = fig.text(0, 0, text, fontsize=fontsize)
    try:
        return probe.get_window_extent(renderer).height / fig.dpi
    finally:
        probe.remove()
