"""The wall clock every service reads, and the type of an injected one.

Code that needs the time takes a ``clock: Clock`` (default :func:`utc_now`), so tests pass a
fake clock instead of patching a module: one function, one seam.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""A source of timezone-aware UTC datetimes."""


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)
