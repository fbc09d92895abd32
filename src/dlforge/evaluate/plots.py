"""Matplotlib figures rendered to PNG bytes, headless.

Every plot in dlforge goes through :func:`fig_to_png`, which renders with the
Agg canvas whatever backend pyplot happens to use, so reports and the web UI
work on servers without a display. Figures are built with :func:`new_figure`
(a plain :class:`matplotlib.figure.Figure`, not registered with pyplot), so
nothing accumulates in pyplot's global figure list in long-running processes.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["fig_to_png", "new_figure", "plot_training_curves"]


def new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A figure that is not tracked by pyplot (no GUI, no global state).

    Args:
        width: Width in inches.
        height: Height in inches.

    Returns:
        A :class:`~matplotlib.figure.Figure` attached to an Agg canvas.
    """
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def fig_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes with the Agg backend and close it.

    Args:
        fig: A matplotlib figure, from :func:`new_figure` or from pyplot.
        dpi: Resolution of the PNG.

    Returns:
        The PNG file's bytes.
    """
    # Attaching an Agg canvas makes rendering independent of pyplot's backend
    # (a Tk or Qt backend would need a display).
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        # Only touch pyplot when the caller already uses it: importing it here
        # would pick a backend as a side effect.
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            plt.close(fig)
    return buf.getvalue()


def plot_training_curves(
    history: Mapping[str, Sequence[tuple[float, float]]],
    title: str | None = None,
) -> bytes:
    """Plot metric histories, one panel per metric family, as PNG.

    Series whose names share the part after the first ``/`` (``train/loss``
    and ``val/loss``) are drawn in the same panel so they can be compared.

    Args:
        history: Metric name to a list of ``(step, value)`` pairs.
        title: Optional title above the panels.

    Returns:
        PNG bytes.
    """
    groups: dict[str, list[str]] = {}
    for name in history:
        key = name.split("/", 1)[1] if "/" in name else name
        groups.setdefault(key, []).append(name)
    n = max(len(groups), 1)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig = new_figure(4.2 * cols, 3.2 * rows)
    if not groups:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no metrics logged", ha="center", va="center")
        ax.set_axis_off()
    for i, (key, names) in enumerate(groups.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        for name in names:
            points = [(float(s), float(v)) for s, v in history[name]]
            if not points:
                continue
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, ms=3, label=name)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig_to_png(fig)
