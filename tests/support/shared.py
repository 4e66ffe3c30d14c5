"""Where the shared fixtures and corpora are: `CONVASSIST_SHARED_DIR`, else `../shared`."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DIR = Path(
    os.environ.get("CONVASSIST_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared"
)
