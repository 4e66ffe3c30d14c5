"""The data dir is the owner's only: folders 0700, files 0600.

Every `convassist` command runs with umask 077, so whatever it (or a child such as the
training runner, or SQLite's -wal/-shm files) creates is private without a chmod per write;
the data dir itself is created 0700 or tightened to 0700 at start-up.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
OTHERS = 0o077  # group and other permission bits


def restrict_umask() -> None:
    """New files are 0600 and new folders 0700 for the rest of this process (and children)."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """Create `path` as 0700, or tighten it to 0700 if others could use it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(path.stat().st_mode) & OTHERS:
        path.chmod(0o700)
    return path


def exposed_paths(root: Path) -> list[Path]:
    """`root` and everything under it that its group or others may read, write or enter
    (symbolic links are neither followed nor reported); empty when `root` is missing."""
    if not root.exists():
        return []
    found = [root] if stat.S_IMODE(root.stat().st_mode) & OTHERS else []
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(folder, name)
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & OTHERS:
                found.append(path)
    return found
