"""The poller's bounds on a task (pure): retrieve-first judgement, throttled time apart."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vidgen_poller.deadline import Bounds, Overdue, overdue, timeout_message, unanswered
from vidgen_poller.schedule import Observed, observe

BOUNDS = Bounds(deadline_s=900.0, throttled_deadline_s=3600.0, unanswered_s=3600.0)

gaps = st.lists(st.floats(0.1, 120.0), min_size=1, max_size=30)


def polls(start: float, steps: list[float]) -> list[float]:
    out, t = [], start
    for step in steps:
        t += step
        out.append(t)
    return out


def history(throttled: list[float], running: list[float]) -> list[Observed]:
    """What the poller knows after each poll: THROTTLED polls, then RUNNING ones."""
    obs, seen = Observed(), []
    for at in throttled:
        obs = observe(obs, "THROTTLED", None, at)
        seen.append(obs)
    for i, at in enumerate(running):
        obs = observe(obs, "RUNNING", min(0.99, 0.01 * (i + 1)), at)
        seen.append(obs)
    return seen


@given(gaps, st.floats(0, 10_000))
def test_a_throttled_task_is_judged_by_the_throttled_bound_only(steps, deadline) -> None:
    bounds = Bounds(deadline, 3600.0, 3600.0)
    for at, obs in zip(polls(0.0, steps), history(polls(0.0, steps), []), strict=True):
        expected = Overdue.THROTTLED if at > 3600.0 else None
        assert overdue(obs, at, bounds) is expected


@given(gaps, gaps, st.floats(0, 50_000))
def test_time_throttled_never_counts_towards_the_deadline(throttled, running, shift) -> None:
    """The same active time gives the same verdict however long the queue held the task."""
    t_polls = polls(0.0, throttled)
    r_polls = polls(t_polls[-1], running)
    shifted_t = [t + shift for t in t_polls]
    shifted_r = [t + shift for t in r_polls]
    a = history(t_polls, r_polls)[len(t_polls) :]
    b = history(shifted_t, shifted_r)[len(t_polls) :]
    for at, shifted_at, obs_a, obs_b in zip(r_polls, shifted_r, a, b, strict=True):
        assert overdue(obs_a, at, BOUNDS) == overdue(obs_b, shifted_at, BOUNDS)
        active = at - t_polls[-1]  # from the last poll that still saw it throttled
        assert (overdue(obs_a, at, BOUNDS) is Overdue.RUNNING) == (active > BOUNDS.deadline_s)


@given(gaps, st.floats(0, 5000), st.floats(0, 5000))
def test_the_verdict_never_goes_back(running, at, later) -> None:
    obs = history([], polls(0.0, running))[-1]
    if overdue(obs, at, BOUNDS) is not None:
        assert overdue(obs, at + later, BOUNDS) is not None


def test_a_task_never_throttled_counts_from_its_submission() -> None:
    obs = observe(Observed(), "RUNNING", 0.5, 901.0)
    assert overdue(obs, 901.0, BOUNDS) is Overdue.RUNNING
    assert overdue(observe(Observed(), "PENDING", None, 899.0), 899.0, BOUNDS) is None


def test_messages_say_which_bound() -> None:
    queued = observe(Observed(), "THROTTLED", None, 4000.0)
    assert "THROTTLED" in timeout_message(Overdue.THROTTLED, queued, 4000.0)
    running = observe(observe(queued, "RUNNING", 0.1, 4100.0), "RUNNING", 0.2, 5000.0)
    assert "within 1000 s of Runway starting it" in timeout_message(
        Overdue.RUNNING, running, 5000.0
    )


def test_unanswered_for_longer_than_the_bound() -> None:
    assert not unanswered(100.0, 3700.0, BOUNDS)
    assert unanswered(100.0, 3700.1, BOUNDS)
