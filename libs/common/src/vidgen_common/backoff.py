"""Exponential backoff with jitter: the one policy every retry loop of vidgen uses."""

from __future__ import annotations

import random


def exponential_delay(tries: int, *, base_s: float = 1.0, cap_s: float = 60.0) -> float:
    """``base_s`` doubled for each failure after the first (``tries`` ≥ 1), at most ``cap_s``:
    the deterministic part of :func:`backoff_delay`, for a loop with nothing to spread out."""
    return min(cap_s, base_s * 2.0 ** max(0, tries - 1))


def backoff_delay(
    tries: int,
    *,
    base_s: float = 1.0,
    cap_s: float = 60.0,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before try number ``tries + 1`` (``tries`` ≥ 1 failed so far).

    Exponential with "equal jitter" (half fixed, half random, so replicas spread out), never
    sooner than Runway's ``Retry-After`` (plus up to 20 % jitter, so a storm's retries do not
    all land in the same instant).
    """
    draw = rng.random if rng is not None else random.random
    exp = exponential_delay(tries, base_s=base_s, cap_s=cap_s)
    delay = exp / 2 + draw() * exp / 2
    if retry_after_s is not None:
        delay = max(delay, retry_after_s * (1.0 + 0.2 * draw()))
    return delay
