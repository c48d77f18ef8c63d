"""The notifier's projection and what it sends (pure): whatever order a generation's events
arrive in, one terminal webhook at most, and no progress after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from vidgen_common.events import (
    EventData,
    GenerationCancelled,
    GenerationCompleted,
    GenerationFailed,
    GenerationRequested,
    TaskProgressed,
    TaskSubmitted,
)
from vidgen_notifier.projection import TERMINAL, apply, new_row, payload_data, with_request

T0 = datetime(2026, 1, 1, tzinfo=UTC)
G = "g1"


def events() -> list[EventData]:
    return [
        GenerationRequested(
            generation_id=G,
            project_id="p1",
            user_id="u1",
            image_key="k",
            image_content_type="image/png",
            prompt="x",
            model="gen4_turbo",
            ratio="1280:720",
            duration=5,
            requested_at=T0,
        ),
        TaskSubmitted(
            generation_id=G,
            user_id="u1",
            runway_task_id="t",
            model="gen4_turbo",
            duration=5,
            submitted_at=T0 + timedelta(seconds=1),
        ),
        TaskProgressed(
            generation_id=G,
            runway_task_id="t",
            runway_status="RUNNING",
            progress=0.5,
            observed_at=T0 + timedelta(seconds=5),
        ),
        GenerationCompleted(
            generation_id=G,
            user_id="u1",
            video_key="videos/u1/g1.mp4",
            size_bytes=1,
            sha256="0" * 64,
            duration_seconds=5,
            width=1,
            height=1,
            codec="h264",
            cost_credits=25,
            completed_at=T0 + timedelta(seconds=30),
        ),
        GenerationFailed(
            generation_id=G,
            stage="media",
            error_code="invalid_video",
            error_message="bad",
            failed_at=T0 + timedelta(seconds=31),
        ),
        GenerationCancelled(
            generation_id=G, stage="poller", cancelled_at=T0 + timedelta(seconds=32)
        ),
    ]


@given(st.permutations(range(6)), st.lists(st.integers(0, 5), max_size=4))
def test_one_terminal_webhook_at_most_and_no_progress_after_it(
    order: list[int], duplicates: list[int]
) -> None:
    all_events = events()
    gen = new_row(G, T0)
    caused = [apply(gen, all_events[i], T0) for i in [*order, *duplicates]]
    sent = [c for c in caused if c is not None]
    terminal = [c for c in sent if c.removeprefix("generation.") in TERMINAL]
    assert len(terminal) == 1
    assert gen.status in TERMINAL
    first_terminal = sent.index(terminal[0])
    assert all(c == terminal[0] for c in sent[first_terminal:])
    assert gen.user_id == "u1"
    assert gen.project_id == "p1"


def test_the_payload_data_of_a_completion() -> None:
    gen = new_row(G, T0)
    for e in events()[:4]:
        apply(gen, e, T0)
    data = payload_data(gen)
    assert data["status"] == "completed"
    assert data["progress"] == 1.0
    assert data["costCredits"] == 25
    assert data["createdAt"] == "2026-01-01T00:00:00Z"
    assert data["startedAt"] == "2026-01-01T00:00:01Z"
    assert data["completedAt"] == "2026-01-01T00:00:30Z"
    assert data["_keys"] == {"video": "videos/u1/g1.mp4", "thumbnail": None}


def test_a_held_payload_is_completed_by_the_request() -> None:
    gen = new_row(G, T0)
    apply(gen, events()[4], T0)  # failed, before the request
    held = payload_data(gen)
    assert held["projectId"] is None
    apply(gen, events()[0], T0)
    data = with_request(held, gen)
    assert data["projectId"] == "p1"
    assert data["createdAt"] == "2026-01-01T00:00:00Z"
    assert data["status"] == "failed"
