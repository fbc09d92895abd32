"""Report rendering: one self-contained, parseable, escaped HTML file."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dlforge.errors import InputError
from dlforge.evaluate.html import Report, image_data_uri
from dlforge.evaluate.plots import fig_to_png, new_figure, plot_training_curves


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _png() -> bytes:
    fig = new_figure(2, 2)
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    return fig_to_png(fig)


def test_fig_to_png_is_png_and_pyplot_figure_is_closed():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    plt.plot([1, 2, 3])
    data = fig_to_png(fig)
    assert data.startswith(b"\x89PNG")
    assert fig.number not in plt.get_fignums()
    img = Image.open(io.BytesIO(data))
    assert img.size == (640, 480)


def test_training_curves_headless():
    png = plot_training_curves({"train/loss": [(0, 1.0), (5, 0.4)], "val/loss": [(5, 0.5)], "lr": []})
    assert Image.open(io.BytesIO(png)).format == "PNG"
    assert plot_training_curves({}).startswith(b"\x89PNG")


def test_report_is_self_contained_and_escaped(tmp_path):
    png = _png()
    r = Report("Run <42> & friends")
    r.add_heading("Summary <h>")
    r.add_text("<script>alert(1)</script>")
    metrics = {"accuracy": np.float64(0.91234), "n": 10, "nested": {"ap50": 0.5}, "curve": list(range(50))}
    r.add_metrics(metrics)
    r.add_table([{"class": "cat", "f1": 0.9}, {"class": "<dog>", "support": 3}], caption="Per class")
    r.add_table(pd.DataFrame({"x": [1.5, np.nan]}, index=["a", "b"]), caption="frame")
    r.add_image(png, caption="curve")
    r.add_image(Image.new("RGB", (4, 4), "red"))
    r.add_gallery([(png, "first"), (png, None)])
    r.add_list(["one", "<two>"])
    out = r.save(tmp_path / "sub" / "report.html")
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temp file left
    html = out.read_text(encoding="utf-8")

    parser = _Collector()
    parser.feed(html)
    parser.close()
    tags = [t for t, _ in parser.tags]
    assert tags.count("img") == 4
    for tag, attrs in parser.tags:
        if tag == "img":
            assert re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/=]+", attrs["src"])
        assert tag not in ("script", "link", "iframe")
    assert "http://" not in html and "https://" not in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    text = "".join(parser.text)
    assert "Run <42> & friends" in text and "<dog>" in text and "<two>" in text
    assert "0.9123" in text and "nested.ap50" in text
    assert '<div class="k">curve</div>' not in html  # long lists are not metric cards
    assert tags.count("table") == 2 and tags.count("h2") == 1


def test_table_truncates_and_rejects_bad_rows():
    r = Report("t").add_table([{"i": i} for i in range(30)], max_rows=10)
    html = r.render()
    assert html.count("<tr>") == 11 and "showing 10 of 30 rows" in html
    with pytest.raises(InputError, match="row 1"):
        Report("t").add_table([{"a": 1}, 5])
    with pytest.raises(InputError, match="rows must be a list of dicts"):
        Report("t").add_table("Per class", [{"a": 1}])  # arguments swapped


def test_image_data_uri_rejects_non_images():
    assert image_data_uri(b"\xff\xd8\xff\xe0xxxx").startswith("data:image/jpeg;base64,")
    with pytest.raises(InputError, match="not a PNG"):
        image_data_uri(b"hello")
    with pytest.raises(InputError, match="caption goes second"):
        Report("t").add_image("caption", b"\x89PNG\r\n\x1a\n")


def test_plots_do_not_need_a_display_backend(tmp_path):
    # A GUI backend in the environment and no display: our plots never touch pyplot.
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from dlforge.evaluate import plot_training_curves, plot_confusion_matrix\n"
        "png = plot_training_curves({'loss': [(0, 1.0), (1, 0.5)]})\n"
        "png2 = plot_confusion_matrix([[3, 1], [0, 2]], ['a', 'b'])\n"
        "assert png.startswith(b'\\x89PNG') and png2.startswith(b'\\x89PNG')\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "TkAgg"
    env["MPLCONFIGDIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
