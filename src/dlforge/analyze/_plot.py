"""Plot helpers shared by the analyses (matplotlib, headless, PNG bytes)."""

from __future__ import annotations

import math

from dlforge.evaluate.plots import fig_to_png, new_figure

__all__ = ["fig_to_png", "new_figure", "grid"]


def grid(n: int, cols: int = 4, cell: tuple[float, float] = (3.2, 2.4)):  # type: ignore[no-untyped-def]
    """A figure with ``n`` subplots laid out ``cols`` wide; returns (fig, flat axes list)."""
    n = max(1, n)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = new_figure(cell[0] * cols, cell[1] * rows)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes
