"""Plots of a dataset report (matplotlib, headless, PNG bytes), drawn from the report's figures."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlforge.evaluate.plots import fig_to_png, new_figure

__all__ = ["render_plots"]


def _bars_from_hist(ax: Any, hist: dict[str, Any], color: str, log: bool = False) -> None:
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    if not counts:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    e = np.asarray(edges)
    ax.bar(e[:-1], counts, width=np.diff(e), align="edge", color=color, edgecolor="white", linewidth=0.3)
    if log:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short ranges


def _classes(f: dict[str, Any]) -> bytes | None:
    counts = f["classes"]["counts"]
    if not counts:
        return None
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:40]
    fig = new_figure(7, 1.2 + 0.22 * len(items))
    ax = fig.add_subplot(1, 1, 1)
    names = [str(k)[:24] for k, _ in items][::-1]
    splits = f["classes"]["per_split"]
    left = np.zeros(len(items))
    if splits and len(splits) > 1:
        for s, cnt in splits.items():
            vals = np.array([cnt.get(k, 0) for k, _ in items][::-1], dtype=float)
            ax.barh(names, vals, left=left, label=s)
            left += vals
        ax.legend(fontsize=7)
    else:
        ax.barh(names, [v for _, v in items][::-1], color="#4c78a8")
    ax.set_xlabel(f["classes"]["basis"])
    ax.tick_params(axis="y", labelsize=7)
    return fig_to_png(fig)


def _grid_figure() -> Any:
    # A fixed 2x3 grid: explicit spacing instead of constrained layout, which costs seconds here.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 6))
    fig.subplots_adjust(left=0.06, right=0.98, top=0.95, bottom=0.08, wspace=0.3, hspace=0.35)
    return fig


def _images(f: dict[str, Any], a: dict[str, np.ndarray]) -> bytes:
    im = f["images"]
    fig = _grid_figure()
    ax = fig.add_subplot(2, 3, 1)
    w, h = a["width"], a["height"]
    ok = np.isfinite(w) & np.isfinite(h)
    if ok.sum() > 5000:  # a scatter of every point says nothing more and costs time
        sel = np.random.default_rng(0).choice(np.flatnonzero(ok), 5000, replace=False)
    else:
        sel = np.flatnonzero(ok)
    ax.scatter(w[sel], h[sel], s=3, alpha=0.3)
    ax.set_xlabel("width")
    ax.set_ylabel("height")
    ax.set_title("sizes", fontsize=9)
    for k, (key, title, log) in enumerate(
        [
            ("width_hist", "width", False),
            ("height_hist", "height", False),
            ("aspect_hist", "aspect (w/h)", True),
            ("brightness_hist", "brightness (0-255)", False),
        ]
    ):
        ax = fig.add_subplot(2, 3, k + 2)
        _bars_from_hist(ax, im[key], "#4c78a8", log)
        ax.set_title(title, fontsize=9)
    ax = fig.add_subplot(2, 3, 6)
    ch = im.get("channels")
    if ch:
        ax.bar(["R", "G", "B"], ch["mean"], yerr=ch["std"], color=["#e45756", "#54a24b", "#4c78a8"], capsize=4)
        ax.set_ylim(0, 1)
        ax.set_title("channel mean ± std", fontsize=9)
    else:
        ax.axis("off")
    return fig_to_png(fig)


def _boxes(f: dict[str, Any], a: dict[str, np.ndarray]) -> bytes:
    bx = f["boxes"]
    fig = _grid_figure()
    ax = fig.add_subplot(2, 3, 1)
    counts = bx["per_image_hist"]["counts"]
    ax.bar(range(len(counts)), counts, color="#4c78a8")
    ax.set_title("boxes per image", fontsize=9)
    ax = fig.add_subplot(2, 3, 2)
    bw, bh = a["w"], a["h"]
    sel = np.arange(len(bw)) if len(bw) <= 5000 else np.random.default_rng(0).choice(len(bw), 5000, replace=False)
    ax.scatter(bw[sel], bh[sel], s=2, alpha=0.3, color="#f58518")
    ax.set_xlabel("box width")
    ax.set_ylabel("box height")
    ax.set_title("box sizes (px)", fontsize=9)
    ax = fig.add_subplot(2, 3, 3)
    _bars_from_hist(ax, bx["rel_size_hist"], "#f58518")
    ax.set_title("relative size sqrt(box/image area)", fontsize=9)
    ax = fig.add_subplot(2, 3, 4)
    _bars_from_hist(ax, bx["aspect_hist"], "#f58518", log=True)
    ax.set_title("aspect (w/h)", fontsize=9)
    ax = fig.add_subplot(2, 3, 5)
    ax.imshow(np.asarray(bx["heatmap"]["counts"]), cmap="magma", extent=(0, 1, 1, 0))
    ax.set_title("box centre heat map", fontsize=9)
    ax = fig.add_subplot(2, 3, 6)
    pc = sorted(bx["per_class"], key=lambda r: -r["boxes"])[:15]
    ax.barh([str(r["class"])[:16] for r in pc][::-1], [r["median_rel_size"] or 0 for r in pc][::-1], color="#54a24b")
    ax.set_title("median relative size per class", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    return fig_to_png(fig)


def _masks(f: dict[str, Any]) -> bytes | None:
    shares = f["masks"].get("pixel_shares")
    if not shares:
        return None
    shares = shares[:30]
    fig = new_figure(7, 1.2 + 0.22 * len(shares))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh([str(s["class"])[:20] for s in shares][::-1], [s["share"] for s in shares][::-1], color="#b279a2")
    ax.set_xlabel("share of labelled pixels")
    return fig_to_png(fig)


def _text(f: dict[str, Any]) -> bytes:
    tx = f["text"]
    fig = new_figure(10, 3.5)
    ax = fig.add_subplot(1, 2, 1)
    _bars_from_hist(
        ax, tx["length_hist"], "#4c78a8", log=bool(tx["length_hist"]["edges"]) and tx["length_hist"]["edges"][0] > 0
    )
    ax.set_title("text length (characters)", fontsize=9)
    ax = fig.add_subplot(1, 2, 2)
    mix = {k: v for k, v in tx["charset_mix"].items() if v > 0}
    ax.bar(list(mix), list(mix.values()), color="#72b7b2")
    ax.set_title("character set mix", fontsize=9)
    return fig_to_png(fig)


def render_plots(figures: dict[str, Any], arrays: dict[str, Any]) -> dict[str, bytes]:
    """Plot name -> PNG for every section the figures hold."""
    out: dict[str, bytes] = {}
    png = _classes(figures)
    if png:
        out["classes"] = png
    if "images" in figures and "images" in arrays:
        out["images"] = _images(figures, arrays["images"])
    if "boxes" in figures and arrays.get("boxes"):
        out["boxes"] = _boxes(figures, arrays["boxes"])
    if "masks" in figures:
        png = _masks(figures)
        if png:
            out["masks"] = png
    if "text" in figures:
        out["text"] = _text(figures)
    return out
