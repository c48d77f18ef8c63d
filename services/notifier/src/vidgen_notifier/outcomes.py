"""What one delivery attempt's answer means, pure (the table of the Standard Webhooks spec).

===========================  ===================================================================
answer                       decision
===========================  ===================================================================
2xx                          ``delivered``
410 Gone                     ``disable``: the receiver wants no more; the endpoint is disabled
                             (its reason names the 410), its pending deliveries wait
3xx                          a failure ("redirect to … not followed"), retried on the schedule
429, 502, 503, 504           a failure retried no earlier than ``Retry-After`` (when sent)
any other status, a timeout, a failure retried on the schedule
a refused address, a
connection error
the schedule exhausted       ``give_up``: the delivery failed and the endpoint is disabled with
                             the reason
===========================  ===================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

from vidgen_notifier.schedule import MAX_ATTEMPTS, next_attempt_in

THROTTLING = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status (and its Retry-After, Location), or an error."""

    status_code: int | None = None
    error: str | None = None
    retry_after: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class Decision:
    kind: Literal["delivered", "retry", "disable", "give_up"]
    error: str | None = None
    next_attempt_at: datetime | None = None
    reason: str | None = None
    """Why the endpoint is disabled (``disable`` and ``give_up``)."""


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` asks for (delta-seconds or an HTTP date), ``None`` if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def describe(answer: Answer) -> str:
    """The attempt's error as the delivery log shows it."""
    if answer.status_code is None:
        return answer.error or "no answer"
    code = answer.status_code
    if 300 <= code < 400:
        where = f" to {answer.location}" if answer.location else ""
        return f"HTTP {code}: redirect{where} not followed (update the endpoint's URL)"
    return f"HTTP {code}" + (f": {answer.error}" if answer.error else "")


def decide(
    answer: Answer,
    attempts: int,
    now: datetime,
    *,
    scale: float = 1.0,
    rand: float = 0.5,
) -> Decision:
    """The decision after attempt number ``attempts`` (1-based) got ``answer``."""
    code = answer.status_code
    if code is not None and 200 <= code < 300:
        return Decision("delivered")
    error = describe(answer)
    if code == 410:
        return Decision(
            "disable", error, reason="the receiver answered 410 Gone: it wants no more webhooks"
        )
    wait = next_attempt_in(
        attempts,
        scale=scale,
        retry_after_s=retry_after_s(answer.retry_after, now) if code in THROTTLING else None,
        rand=lambda: rand,
    )
    if wait is None:
        return Decision(
            "give_up",
            error,
            reason=f"{MAX_ATTEMPTS} attempts over the whole retry schedule failed; "
            f"the last: {error}",
        )
    return Decision("retry", error, next_attempt_at=now + timedelta(seconds=wait))
