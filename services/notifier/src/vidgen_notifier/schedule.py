"""When to try a failed delivery again: the Standard Webhooks schedule, pure.

Attempt 1 is sent at once; after the n-th failed attempt the next waits ``DELAYS_S[n]``
(5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h: ten attempts over about 75 hours),
times ``scale`` (``VIDGEN_WEBHOOK_SCHEDULE_SCALE``), with ±``jitter`` of itself so that
endpoints that failed together are not retried together. A ``Retry-After`` the receiver sent
is honoured: the next attempt is never earlier than it asked (capped at a day). After the
last attempt the schedule is exhausted (``None``): the delivery has failed.
"""

from __future__ import annotations

from collections.abc import Callable

DELAYS_S: tuple[float, ...] = (
    0.0,
    5.0,
    300.0,
    1800.0,
    7200.0,
    18000.0,
    36000.0,
    50400.0,
    72000.0,
    86400.0,
)
"""``DELAYS_S[n]``: the wait before attempt ``n + 1`` (attempt 1 is immediate)."""

MAX_ATTEMPTS = len(DELAYS_S)
RETRY_AFTER_CAP_S = 86400.0
JITTER = 0.1


def next_attempt_in(
    attempts: int,
    *,
    scale: float = 1.0,
    retry_after_s: float | None = None,
    rand: Callable[[], float] = lambda: 0.5,
    jitter: float = JITTER,
) -> float | None:
    """Seconds from now to the next attempt after ``attempts`` attempts have failed, or
    ``None`` when the schedule is exhausted. ``rand()`` is uniform in [0, 1)."""
    if attempts < 1:
        return 0.0
    if attempts >= MAX_ATTEMPTS:
        return None
    base = DELAYS_S[attempts] * scale
    delay = base * (1.0 + jitter * (2.0 * rand() - 1.0))
    if retry_after_s is not None and retry_after_s > 0:
        delay = max(delay, min(retry_after_s, RETRY_AFTER_CAP_S))
    return max(0.0, delay)
