"""Where the workspace lives and which database it uses.

Settings come from the environment (``DLFORGE_HOME``, ``DLFORGE_DATABASE_URL``,
``DLFORGE_AUTHOR``) or from arguments; nothing else in the program reads the
environment for these.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs


def default_home() -> Path:
    """``./.dlforge`` when it exists in the current directory, else the user data dir."""
    local = Path.cwd() / ".dlforge"
    if local.is_dir():
        return local
    return Path(platformdirs.user_data_dir("dlforge"))


def default_author() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry in some containers
        return "unknown"


@dataclass(frozen=True)
class Settings:
    """Resolved workspace settings."""

    home: Path
    database_url: str
    author: str

    @classmethod
    def load(cls, home: str | os.PathLike[str] | None = None, database_url: str | None = None) -> Settings:
        resolved = Path(home or os.environ.get("DLFORGE_HOME") or default_home()).expanduser().resolve()
        url = database_url or os.environ.get("DLFORGE_DATABASE_URL") or f"sqlite:///{resolved / 'dlforge.db'}"
        author = os.environ.get("DLFORGE_AUTHOR") or default_author()
        return cls(home=resolved, database_url=url, author=author)

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def tmp_dir(self) -> Path:
        return self.home / "tmp"
