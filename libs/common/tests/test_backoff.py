"""The retry delay every service uses: exponential with jitter, honouring Retry-After."""

from __future__ import annotations

import random

from vidgen_common.backoff import backoff_delay


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, base_s=1, cap_s=16, rng=rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        exp = min(16, 2 ** (n - 1))
        assert exp / 2 <= d <= exp
    assert 10 <= backoff_delay(1, retry_after_s=10, rng=rng) <= 12
