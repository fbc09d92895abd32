"""Shared fixtures: a fresh workspace per test and small generated datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image

# Property tests explore the same examples on every run, so CI cannot go red by chance;
# a failing example is still found and reported the same way.
settings.register_profile("dlforge", derandomize=True, deadline=None)
settings.load_profile("dlforge")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from dlforge.workspace import Workspace

    home = tmp_path / "ws"
    monkeypatch.setenv("DLFORGE_HOME", str(home))
    monkeypatch.delenv("DLFORGE_DATABASE_URL", raising=False)
    w = Workspace.open(home)
    yield w
    w.close()


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sklearn digits as PNG class folders (1,797 images)."""
    from dlforge.quickstart import write_digits

    return write_digits(tmp_path_factory.mktemp("digits") / "digits")


@pytest.fixture
def small_imagefolder(tmp_path: Path) -> Path:
    """Three classes of 12 distinct 24x24 images each."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for c in ("cat", "dog", "fox"):
        (root / c).mkdir(parents=True)
        for i in range(12):
            arr = rng.integers(0, 255, size=(24, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{c}_{i}.png")
    return root
