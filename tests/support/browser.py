"""Headless Chromium (Debian's, at /usr/bin/chromium) driven by Playwright's Python package.

Playwright's own browser download cannot work on machines without internet, so the browser
is the system's, started by path with the flags that keep it off the network.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM = Path(os.environ.get("VIDGEN_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def chromium_path() -> Path | None:
    """The Chromium executable, if installed."""
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None
