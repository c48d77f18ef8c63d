"""The projection's folding rules, without I/O: any order and any duplicates, one outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from vidgen_common.events import (
    EventData,
    GenerationCancelled,
    GenerationCompleted,
    GenerationFailed,
    TaskProgressed,
    TaskSubmitted,
    VideoReady,
)
from vidgen_gateway.models import RANK, Generation, Status
from vidgen_gateway.projection import apply_event
from vidgen_gateway.views import shown_error, to_view
from vidgen_runway.verdicts import MODERATION_USER_MESSAGE

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GID = "g-1"


def fresh() -> Generation:
    return Generation(
        id=GID,
        user_id="u",
        project_id="p",
        prompt="x",
        model="gen4_turbo",
        ratio="1280:720",
        duration=5,
        image_key="images/u/p.png",
        image_content_type="image/png",
        created_at=T0,
        updated_at=T0,
    )


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


SUCCESS: list[EventData] = [
    TaskSubmitted(
        generation_id=GID,
        user_id="u",
        runway_task_id="t1",
        model="gen4_turbo",
        duration=5,
        estimated_cost_credits=30,
        submitted_at=at(1),
    ),
    TaskProgressed(
        generation_id=GID,
        runway_task_id="t1",
        runway_status="RUNNING",
        progress=0.3,
        estimated_cost_credits=30,
        observed_at=at(2),
    ),
    TaskProgressed(
        generation_id=GID,
        runway_task_id="t1",
        runway_status="RUNNING",
        progress=0.8,
        observed_at=at(3),
    ),
    VideoReady(
        generation_id=GID,
        user_id="u",
        runway_task_id="t1",
        output_urls=["https://x/y.mp4"],
        fetched_at=at(4),
        cost_credits=25,
    ),
    GenerationCompleted(
        generation_id=GID,
        user_id="u",
        video_key="videos/u/g-1.mp4",
        thumbnail_key="videos/u/g-1.jpg",
        size_bytes=10,
        sha256="0" * 64,
        duration_seconds=5,
        width=1280,
        height=720,
        codec="h264",
        cost_credits=25,
        completed_at=at(5),
    ),
]


def fold(events: list[EventData]) -> Generation:
    gen = fresh()
    for e in events:
        apply_event(gen, e)
    return gen


def visible(gen: Generation) -> dict[str, object]:
    return to_view(gen, lambda key: f"signed:{key}").model_dump(exclude={"updated_at"})


@settings(max_examples=200, deadline=None)
@given(st.permutations(SUCCESS), st.lists(st.sampled_from(SUCCESS), max_size=4))
def test_any_order_with_duplicates_gives_the_in_order_outcome(
    order: list[EventData], dupes: list[EventData]
) -> None:
    expected = visible(fold(SUCCESS))
    gen = fresh()
    ranks, progress = [], []
    for e in [*order, *dupes]:
        apply_event(gen, e)
        ranks.append(RANK[Status(gen.status)])
        progress.append(gen.progress)
    assert visible(gen) == expected
    assert ranks == sorted(ranks)
    assert progress == sorted(progress)


def test_in_order_outcome() -> None:
    gen = fold(SUCCESS)
    assert gen.status == "completed"
    assert (gen.progress, gen.cost_credits, gen.cost_final) == (1.0, 25, True)
    assert gen.completed_at == at(5)
    assert (gen.video_key, gen.runway_task_id) == ("videos/u/g-1.mp4", "t1")


def test_terminal_statuses_are_final_whichever_comes_first() -> None:
    failed = GenerationFailed(
        generation_id=GID,
        stage="media",
        error_code="invalid_video",
        error_message="no moov atom",
        failed_at=at(9),
    )
    cancelled = GenerationCancelled(generation_id=GID, stage="poller", cancelled_at=at(8))
    gen = fold([failed, *SUCCESS, cancelled])
    assert gen.status == "failed"
    assert gen.video_key is None
    assert gen.completed_at == at(9)
    assert gen.progress == 0  # progress does not move once terminal
    gen = fold([cancelled, failed])
    assert (gen.status, gen.error_code) == ("cancelled", None)


def test_changes_are_reported_only_when_something_visible_changes() -> None:
    gen = fresh()
    assert apply_event(gen, SUCCESS[1]) is True
    assert apply_event(gen, SUCCESS[1]) is False
    older = TaskProgressed(
        generation_id=GID,
        runway_task_id="t1",
        runway_status="PENDING",
        progress=0.1,
        observed_at=at(1),
    )
    assert apply_event(gen, older) is False


def test_a_resubmitted_task_replaces_the_task_id() -> None:
    first = SUCCESS[0]
    second = TaskSubmitted(
        generation_id=GID,
        user_id="u",
        runway_task_id="t2",
        model="gen4_turbo",
        duration=5,
        attempt=2,
        submitted_at=at(6),
    )
    assert fold([first, second]).runway_task_id == "t2"
    assert fold([second, first]).runway_task_id == "t2"


def test_moderation_failures_are_worded_neutrally() -> None:
    gen = fold(
        [
            GenerationFailed(
                generation_id=GID,
                stage="poller",
                error_code="runway_failed",
                error_message="Flagged: violence",
                runway_failure_code="SAFETY.OUTPUT.VIDEO",
                failed_at=at(3),
            )
        ]
    )
    assert gen.error_message == "Flagged: violence"
    assert shown_error(gen) == MODERATION_USER_MESSAGE
    other = fold(
        [
            GenerationFailed(
                generation_id=GID,
                stage="generator",
                error_code="runway_rejected",
                error_message="HTTP 400 promptImage: bad asset",
                user_message="Image refused",
                failed_at=at(3),
            )
        ]
    )
    assert shown_error(other) == "Image refused"
