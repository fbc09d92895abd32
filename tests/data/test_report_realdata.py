"""Dataset reports on the real data in ../shared/data (skipped when absent)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

pytestmark = pytest.mark.realdata


@pytest.mark.skipif(not (DATA / "kangaroo-voc").is_dir(), reason="../shared/data/kangaroo-voc absent")
def test_report_on_kangaroo_voc(tmp_path: Path) -> None:
    from dlforge.data.report import report_version
    from dlforge.workspace import Workspace

    ws = Workspace.open(home=tmp_path / "home")
    res = ws.import_data(DATA / "kangaroo-voc", "kangaroo")
    rep = report_version(ws, "kangaroo")
    f = rep.figures
    assert f["overview"]["samples"] == res.imported
    xml_boxes = sum(len(re.findall(r"<object>", p.read_text())) for p in (DATA / "kangaroo-voc").rglob("*.xml"))
    # Every box of every imported image is counted (skipped items take theirs with them).
    assert 0 < f["boxes"]["boxes"] <= xml_boxes
    assert f["boxes"]["outside_image"] == 0
    assert f["images"]["measured"] == res.imported and f["images"]["decoded_for_size"] == 0
    html = rep.save_html(tmp_path / "k.html").read_text()
    assert html.count("data:image/png;base64,") >= 3


@pytest.mark.skipif(not (DATA / "waimai-10k").is_dir(), reason="../shared/data/waimai-10k absent")
def test_report_on_waimai_text(tmp_path: Path) -> None:
    from dlforge.data.report import report_version
    from dlforge.workspace import Workspace

    ws = Workspace.open(home=tmp_path / "home")
    ws.import_data(DATA / "waimai-10k", "waimai", format="csv", text_column="review", label_column="label")
    rep = report_version(ws, "waimai")
    tx = rep.figures["text"]
    assert tx["texts"] > 11000
    assert tx["charset_mix"]["cjk"] > 0.6
    assert set(tx["top_ngrams"]) == {"0", "1"}
    assert all(len(g[0]) == 2 for g in tx["top_ngrams"]["1"])  # Chinese: character bigrams
    assert rep.figures["classes"]["imbalance_ratio"] == pytest.approx(
        max(rep.figures["classes"]["counts"].values()) / min(rep.figures["classes"]["counts"].values())
    )
