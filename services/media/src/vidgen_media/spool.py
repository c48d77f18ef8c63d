"""Local copies of videos being stored: probed from disk, never through the network.

The transfer already streams every byte of a video; it also writes them to a file here, and
the video check (PyAV) reads that file. So a network hiccup can never be mistaken for a broken
video, and the object is not downloaded a second time to be checked. Each copy lives for one
delivery (:meth:`Spool.reserve` deletes it afterwards, whatever happens).

Disk: at most ``max_concurrent_transfers`` x ``max_video_bytes`` per process, in ``directory``
(the system's temporary directory by default). Copies left by a process that was killed are
removed by :meth:`Spool.sweep` once older than ``max_age_s`` (a live copy is written or read
within seconds; several processes may share the directory).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from vidgen_media.errors import SpoolFailed

log = logging.getLogger(__name__)

PREFIX = "vidgen-media-"


class Spool:
    def __init__(self, directory: Path | None = None, *, max_age_s: float = 3600.0) -> None:
        self.directory = directory or Path(tempfile.gettempdir()) / "vidgen-media-spool"
        self._max_age_s = max_age_s

    @contextlib.contextmanager
    def reserve(self, name: str) -> Iterator[Path]:
        """A fresh, empty file for one video; removed when the block ends."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, raw = tempfile.mkstemp(prefix=f"{PREFIX}{_safe(name)}-", dir=self.directory)
            os.close(fd)
        except OSError as exc:
            raise SpoolFailed(f"no local copy could be made in {self.directory}: {exc}") from exc
        path = Path(raw)
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def sweep(self, now: float | None = None) -> int:
        """Remove copies older than ``max_age_s`` (left by a killed process); how many."""
        now = time.time() if now is None else now
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for path in self.directory.glob(f"{PREFIX}*"):
                with contextlib.suppress(FileNotFoundError):
                    if now - path.stat().st_mtime > self._max_age_s:
                        path.unlink()
                        removed += 1
        if removed:
            log.info("removed %d local copies left by an earlier process", removed)
        return removed


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:64]
