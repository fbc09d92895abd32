"""Helpers shared by the benchmarks: peak memory and a JSON line."""

from __future__ import annotations

import json
import platform
import sys
from typing import Any

import psutil


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its children, in MiB (Linux ru_maxrss is KiB)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)


def emit(figures: dict[str, Any]) -> None:
    figures = {
        **figures,
        "machine": f"{psutil.cpu_count()} cpu, {platform.machine()}",
        "python": platform.python_version(),
    }
    sys.stdout.write(json.dumps(figures) + "\n")
