"""Every data/runs CLI command with --json: one JSON object on stdout, exit 0; errors: one line, exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def dlforge(home: Path, *args: str, ok: bool = True) -> dict | str:
    env = {**os.environ, "DLFORGE_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "dlforge.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=300)
    if not ok:
        assert proc.returncode != 0, proc.stdout
        return proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1, proc.stdout  # exactly one JSON line
    return json.loads(proc.stdout)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "ws"


def test_data_commands_round_trip(home: Path, small_imagefolder: Path, tmp_path: Path) -> None:
    res = dlforge(home, "data", "import", str(small_imagefolder), "--name", "animals", "--json")
    assert res["format"] == "imagefolder" and res["detected"] and res["imported"] == 36
    assert res["task"] == "image_classification" and sorted(res["classes"]) == ["cat", "dog", "fox"]
    assert dlforge(home, "data", "list", "--json")["datasets"][0]["latest"] == "animals@1"
    cleaned = dlforge(home, "data", "clean", "animals", "--set", "min_side=8", "--report",
                      str(tmp_path / "clean.json"), "--json")
    assert cleaned["version"] == "animals@2" and cleaned["excluded"] == 0
    assert "counts" in json.loads((tmp_path / "clean.json").read_text())
    split = dlforge(home, "data", "split", "animals", "--val", "0.25", "--test", "0.25", "--seed", "3", "--json")
    assert split["version"] == "animals@3" and sum(split["counts"].values()) == 36
    shown = dlforge(home, "data", "show", "animals@3", "--json")
    assert shown["counts"]["splits"] == split["counts"] and set(shown["per_class"]) == {"cat", "dog", "fox"}
    renamed = dlforge(home, "data", "rename-classes", "animals", "dog=canine", "--json")
    assert "canine" in renamed["classes"]
    labels = tmp_path / "labels.csv"
    labels.write_text("uid,label\n1,fox\n", encoding="utf-8")
    assert dlforge(home, "data", "relabel", "animals", "--labels", str(labels), "--json")["relabelled"] == 1
    sampled = dlforge(home, "data", "sample", "animals", "--n", "9", "--json")
    assert sampled["counts"]["active"] == 9
    merged = dlforge(home, "data", "merge", "animals@1", "animals@3", "--json")
    assert merged["counts"]["total"] == 72
    out = tmp_path / "export"
    exported = dlforge(home, "data", "export", "animals@3", "--format", "imagefolder", "--out", str(out), "--json")
    assert exported["items"] == 36 and len(list(out.rglob("*.png"))) == 36
    log = dlforge(home, "data", "log", "animals", "--json")
    assert [v["operation"] for v in log["versions"]] == [
        "import", "clean", "split", "rename_classes", "relabel", "sample", "merge"]
    assert dlforge(home, "data", "checks", "--json")["checks"]["near_duplicates"] is True


def test_cli_errors_are_one_line_and_nonzero(home: Path, tmp_path: Path) -> None:
    err = dlforge(home, "data", "import", str(tmp_path / "missing"), "--name", "x", "--json", ok=False)
    assert "no such file" in err and len(err.strip().splitlines()) == 1
    err = dlforge(home, "data", "show", "nothing@1", "--json", ok=False)
    assert "does not exist" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "folder").mkdir()
    err = dlforge(home, "data", "import", str(tmp_path / "folder"), "--name", "x", "--format", "nope", ok=False)
    assert "unknown format 'nope'" in err
    err = dlforge(home, "data", "clean", "x", "--disable", "bogus", ok=False)
    assert "does not exist" in err or "not a check" in err


def test_version_flag(home: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dlforge.cli.main", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("dlforge ")
