"""What one poll means (pure): columns, events, next poll."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vidgen_common.events import GenerationFailed, TaskProgressed, VideoReady
from vidgen_poller.models import TrackedTask
from vidgen_poller.outcomes import columns_of, decide, observed_of
from vidgen_poller.runway import TaskView
from vidgen_poller.schedule import DurationStats, Observed, ScheduleConfig

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CFG = ScheduleConfig()
STATS = DurationStats(45.0, 30.0, 10)


def row(**fields: object) -> TrackedTask:
    base: dict[str, object] = {
        "runway_task_id": "t1",
        "generation_id": "g1",
        "user_id": "u1",
        "model": "gen4_turbo",
        "duration": 5,
        "attempt": 1,
        "submitted_at": T0,
        "state": "active",
        "next_poll_at": T0,
        "deadline_at": T0 + timedelta(minutes=15),
        "created_at": T0,
        "updated_at": T0,
    }
    base.update(fields)
    return TrackedTask(**base)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_observed_round_trips_through_columns() -> None:
    obs = Observed(
        status="RUNNING",
        active_since_s=3.0,
        last_not_running_s=10.0,
        last_poll_s=20.0,
        points=((15.0, 0.2), (20.0, 0.4)),
        throttled_streak=0,
        was_throttled=True,
    )
    assert observed_of(row(**columns_of(obs))) == obs
    one = Observed(status="RUNNING", points=((15.0, 0.2),))
    assert observed_of(row(**columns_of(one))).points == ((15.0, 0.2),)


def test_running_reports_progress_and_schedules_the_next_poll() -> None:
    d = decide(
        row(), TaskView("t1", "RUNNING", progress=0.4), now=at(20), stats=STATS, cfg=CFG,
        progress_step=0.1,
    )  # fmt: skip
    assert isinstance(d.events[0], TaskProgressed)
    assert d.next_poll_in_s is not None
    assert d.next_poll_in_s > 1
    assert d.fields["reported_progress"] == 0.4
    quiet = decide(
        row(status="RUNNING", reported_status="RUNNING", reported_progress=0.4, p2_at_s=20.0,
            p2=0.4, last_poll_s=20.0),
        TaskView("t1", "RUNNING", progress=0.45), now=at(22), stats=STATS, cfg=CFG,
        progress_step=0.1,
    )  # fmt: skip
    assert quiet.events == ()


def test_success_teaches_the_duration_unless_throttled_or_a_refresh() -> None:
    view = TaskView("t1", "SUCCEEDED", output=("https://o",), cost_credits=25)
    d = decide(
        row(last_poll_s=46.0, active_since_s=0.0), view, now=at(47), stats=STATS, cfg=CFG,
        progress_step=0.1, earlier_cost=5,
    )  # fmt: skip
    assert d.sample_s == 46.5
    [ready] = d.events
    assert isinstance(ready, VideoReady)
    assert (ready.cost_credits, ready.fetched_at) == (30, at(47))
    assert d.next_poll_in_s is None
    throttled = decide(
        row(last_poll_s=46.0, was_throttled=True), view, now=at(47), stats=STATS, cfg=CFG,
        progress_step=0.1,
    )  # fmt: skip
    refresh = decide(
        row(last_poll_s=46.0, state="refresh"), view, now=at(47), stats=STATS, cfg=CFG,
        progress_step=0.1,
    )  # fmt: skip
    assert throttled.sample_s is None
    assert refresh.sample_s is None


def test_a_cancel_we_did_not_ask_for_is_a_failure() -> None:
    d = decide(
        row(), TaskView("t1", "CANCELLED", cost_credits=0), now=at(30), stats=STATS, cfg=CFG,
        progress_step=0.1,
    )  # fmt: skip
    [event] = d.events
    assert isinstance(event, GenerationFailed)
    assert event.error_code == "runway_task_cancelled"
