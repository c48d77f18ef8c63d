"""The retry schedule and what an attempt's answer means (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vidgen_notifier.outcomes import Answer, decide, retry_after_s
from vidgen_notifier.schedule import DELAYS_S, MAX_ATTEMPTS, next_attempt_in

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_standard_webhooks_schedule_without_jitter() -> None:
    waits = [next_attempt_in(n, jitter=0.0) for n in range(1, MAX_ATTEMPTS)]
    assert waits == [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    assert next_attempt_in(MAX_ATTEMPTS) is None
    assert sum(DELAYS_S) == 75 * 3600 + 35 * 60 + 5  # 75:35:05, the spec's last row


@given(
    attempts=st.integers(1, MAX_ATTEMPTS - 1),
    scale=st.floats(0.0001, 10),
    rand=st.floats(0, 1, exclude_max=True),
    retry_after=st.one_of(st.none(), st.floats(0, 10 * 86400)),
)
def test_a_wait_stays_within_the_jitter_and_honours_retry_after(
    attempts: int, scale: float, rand: float, retry_after: float | None
) -> None:
    wait = next_attempt_in(attempts, scale=scale, retry_after_s=retry_after, rand=lambda: rand)
    assert wait is not None
    base = DELAYS_S[attempts] * scale
    if retry_after is None or retry_after <= 0:
        assert base * 0.9 - 1e-9 <= wait <= base * 1.1 + 1e-9
    else:
        assert wait >= min(retry_after, 86400) - 1e-9
        assert wait <= max(base * 1.1, min(retry_after, 86400)) + 1e-9


@given(st.integers(MAX_ATTEMPTS, 1000), st.floats(0.0001, 10))
def test_the_schedule_ends_after_ten_attempts(attempts: int, scale: float) -> None:
    assert next_attempt_in(attempts, scale=scale, retry_after_s=5.0) is None


@given(st.integers(1, MAX_ATTEMPTS - 2), st.floats(0, 1, exclude_max=True))
def test_later_attempts_never_wait_less(attempts: int, rand: float) -> None:
    a = next_attempt_in(attempts, rand=lambda: rand)
    b = next_attempt_in(attempts + 1, rand=lambda: rand)
    assert a is not None
    assert b is not None
    assert b >= a


@pytest.mark.parametrize("code", [200, 201, 204, 299])
def test_2xx_is_delivered(code: int) -> None:
    assert decide(Answer(code), 3, NOW).kind == "delivered"


def test_410_disables_the_endpoint_with_a_reason() -> None:
    d = decide(Answer(410), 1, NOW)
    assert d.kind == "disable"
    assert d.reason is not None
    assert "410" in d.reason


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_is_a_failure_said_as_such(code: int) -> None:
    d = decide(Answer(code, location="https://elsewhere.example/"), 1, NOW)
    assert d.kind == "retry"
    assert d.error is not None
    assert "redirect to https://elsewhere.example/ not followed" in d.error


@pytest.mark.parametrize("code", [429, 502, 503, 504])
def test_throttling_answers_honour_retry_after(code: int) -> None:
    d = decide(Answer(code, retry_after="120"), 1, NOW)
    assert d.kind == "retry"
    assert d.next_attempt_at == NOW + timedelta(seconds=120)
    date = (NOW + timedelta(seconds=600)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert decide(Answer(code, retry_after=date), 1, NOW).next_attempt_at == NOW + timedelta(
        seconds=600
    )


def test_other_failures_ignore_retry_after_and_follow_the_schedule() -> None:
    d = decide(Answer(500, retry_after="999"), 1, NOW)
    assert d.next_attempt_at == NOW + timedelta(seconds=5)
    d = decide(Answer(error="timed out after 15 s"), 2, NOW)
    assert (d.kind, d.error) == ("retry", "timed out after 15 s")
    assert d.next_attempt_at == NOW + timedelta(seconds=300)


def test_an_exhausted_schedule_gives_up_and_says_why() -> None:
    d = decide(Answer(500, error="boom"), MAX_ATTEMPTS, NOW)
    assert d.kind == "give_up"
    assert d.reason is not None
    assert "10 attempts" in d.reason
    assert "HTTP 500: boom" in d.reason


def test_the_scale_compresses_the_schedule() -> None:
    d = decide(Answer(500), 2, NOW, scale=0.001)
    assert d.next_attempt_at == NOW + timedelta(seconds=0.3)


def test_retry_after_forms() -> None:
    assert retry_after_s("7", NOW) == 7
    assert retry_after_s("garbage", NOW) is None
    assert retry_after_s(None, NOW) is None
    past = (NOW - timedelta(hours=1)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_s(past, NOW) == 0
