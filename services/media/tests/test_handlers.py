"""The VideoReady handler with in-memory fakes of every port (no I/O)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from vidgen_common.errors import PermanentError
from vidgen_common.events import (
    Envelope,
    GenerationCompleted,
    GenerationFailed,
    VideoReady,
    VideoUrlExpired,
)
from vidgen_common.testing import wait_until
from vidgen_media.errors import (
    InvalidVideo,
    StorageFailed,
    TransientDownloadError,
    UrlExpired,
    VideoTooLarge,
)
from vidgen_media.handlers import Limits, VideoReadyHandler
from vidgen_media.pipeline import Pipeline


def ready(gid: str = "gen-1", user: str = "user-1", url: str = "https://r/0.mp4") -> Envelope[Any]:
    return Envelope(
        data=VideoReady(
            generation_id=gid,
            user_id=user,
            runway_task_id="task-1",
            output_urls=[url],
            fetched_at=datetime.now(UTC),
            cost_credits=25,
        ),
        source="/test",
    )


def handler(world: Any, **limits: Any) -> VideoReadyHandler:
    pipeline = Pipeline(world.fetcher, world.prober, world.storage)
    return VideoReadyHandler(world.uow, pipeline, Limits(**{"max_url_refreshes": 2, **limits}))


async def test_a_video_is_stored_checked_and_reported(world) -> None:
    event = ready()
    await handler(world)(event)
    [done] = world.of_type(GenerationCompleted)
    body = world.fetcher.body
    assert done.video_key == "videos/user-1/gen-1.mp4"
    assert done.thumbnail_key == "videos/user-1/gen-1.jpg"
    assert (done.size_bytes, done.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    assert (done.width, done.height, done.codec, done.duration_seconds) == (1280, 720, "h264", 5)
    assert (done.content_type, done.cost_credits) == ("video/mp4", 25)
    assert world.fetcher.calls == [("https://r/0.mp4", "videos/user-1/gen-1.mp4")]
    assert world.storage.objects["videos/user-1/gen-1.jpg"][1] == "image/jpeg"
    row = world.rows["gen-1"]
    assert (row.state, row.sha256, row.attempts) == ("completed", done.sha256, 1)
    assert event.id in world.inbox


async def test_the_same_event_again_has_no_second_effect(world) -> None:
    event = ready()
    h = handler(world)
    await h(event)
    await h(event)
    assert len(world.fetcher.calls) == 1
    assert len(world.of_type(GenerationCompleted)) == 1


async def test_another_video_ready_for_a_finished_generation_is_only_recorded(world) -> None:
    h = handler(world)
    await h(ready())
    later = ready()
    await h(later)
    assert len(world.fetcher.calls) == 1
    assert len(world.emitted) == 1
    assert later.id in world.inbox


async def test_an_expired_url_asks_once_for_a_fresh_one_then_resumes(world) -> None:
    h = handler(world)
    world.fetcher.errors = [UrlExpired("403")]
    first = ready(url="https://r/0.mp4?old")
    await h(first)
    await h(first)  # redelivered: no second request for a fresh URL
    [asked] = world.of_type(VideoUrlExpired)
    assert (asked.generation_id, asked.runway_task_id, asked.user_id) == (
        "gen-1",
        "task-1",
        "user-1",
    )
    assert world.rows["gen-1"].state == "waiting_for_url"
    assert not world.of_type(GenerationCompleted)

    await h(ready(url="https://r/0.mp4?fresh"))
    assert [url for url, _ in world.fetcher.calls] == [
        "https://r/0.mp4?old",
        "https://r/0.mp4?fresh",
    ]
    assert len(world.of_type(GenerationCompleted)) == 1
    assert world.rows["gen-1"].url_refreshes == 1


async def test_an_url_refused_again_and_again_fails_the_generation(world) -> None:
    h = handler(world, max_url_refreshes=2)
    world.fetcher.errors = [UrlExpired("403")] * 3
    for _ in range(3):
        await h(ready())
    assert len(world.of_type(VideoUrlExpired)) == 2
    [failed] = world.of_type(GenerationFailed)
    assert (failed.error_code, failed.stage) == ("url_expired", "media")
    assert "after 2 fresh URLs" in failed.error_message


async def test_a_transient_failure_is_retried_by_redelivery(world) -> None:
    h = handler(world)
    world.fetcher.errors = [TransientDownloadError("connection reset, 5 times")]
    event = ready()
    with pytest.raises(TransientDownloadError):
        await h(event)
    row = world.rows["gen-1"]
    assert (row.state, row.failures, row.error_code) == ("retrying", 1, "download_failed")
    assert event.id not in world.inbox
    assert not world.emitted
    await h(event)  # the consumer's retry
    assert len(world.of_type(GenerationCompleted)) == 1
    assert world.rows["gen-1"].attempts == 2


async def test_transient_failures_give_up_after_max_attempts(world) -> None:
    h = handler(world, max_attempts=3)
    world.fetcher.errors = [StorageFailed("S3 is down")] * 3
    event = ready()
    for _ in range(2):
        with pytest.raises(StorageFailed):
            await h(event)
    await h(event)  # the third attempt reports instead of raising
    [failed] = world.of_type(GenerationFailed)
    assert failed.error_code == "storage_failed"
    assert failed.error_message == "gave up after 3 attempts: S3 is down"
    assert world.rows["gen-1"].state == "failed"
    assert event.id in world.inbox


async def test_a_stored_video_is_not_downloaded_again_after_a_later_failure(world) -> None:
    h = handler(world)
    world.prober.errors = [StorageFailed("store unreachable while checking")]
    event = ready()
    with pytest.raises(StorageFailed):
        await h(event)
    row = world.rows["gen-1"]
    assert (row.state, row.size_bytes) == ("stored", len(world.fetcher.body))
    await h(event)
    assert len(world.fetcher.calls) == 1
    [done] = world.of_type(GenerationCompleted)
    assert done.sha256 == hashlib.sha256(world.fetcher.body).hexdigest()


async def test_a_stored_object_that_changed_is_downloaded_again(world) -> None:
    h = handler(world)
    world.prober.errors = [StorageFailed("store unreachable while checking")]
    event = ready()
    with pytest.raises(StorageFailed):
        await h(event)
    await world.storage.put_bytes("videos/user-1/gen-1.mp4", b"something else", "video/mp4")
    await h(event)
    assert len(world.fetcher.calls) == 2
    assert len(world.of_type(GenerationCompleted)) == 1


async def test_an_invalid_video_fails_and_is_removed(world) -> None:
    world.prober.errors = [InvalidVideo("not a media file")]
    await handler(world)(ready())
    [failed] = world.of_type(GenerationFailed)
    assert (failed.error_code, failed.error_message) == ("invalid_video", "not a media file")
    assert (failed.runway_task_id, failed.cost_credits) == ("task-1", 25)
    assert "videos/user-1/gen-1.mp4" not in world.storage.objects
    assert world.storage.removed == ["videos/user-1/gen-1.mp4"]
    assert world.rows["gen-1"].state == "failed"


async def test_a_video_over_the_cap_fails_at_once(world) -> None:
    world.fetcher.errors = [VideoTooLarge("600 MiB, over the cap")]
    await handler(world)(ready())
    [failed] = world.of_type(GenerationFailed)
    assert failed.error_code == "video_too_large"
    assert world.rows["gen-1"].failures == 0


async def test_transfers_run_at_most_concurrency_at_once(world) -> None:
    h = handler(world, concurrency=2)
    world.fetcher.gate = asyncio.Event()
    tasks = [asyncio.create_task(h(ready(gid=f"gen-{i}"))) for i in range(5)]
    await wait_until(lambda: world.fetcher.running >= 2, within=5, what="two transfers")
    for _ in range(20):  # give the others every chance to (wrongly) start
        await asyncio.sleep(0)
    assert world.fetcher.running == 2
    world.fetcher.gate.set()
    await asyncio.gather(*tasks)
    assert world.fetcher.max_running == 2
    assert len(world.of_type(GenerationCompleted)) == 5


@pytest.mark.parametrize("user", ["../other", "a/b", ""])
async def test_ids_that_would_escape_the_key_layout_are_refused(world, user) -> None:
    with pytest.raises(PermanentError):
        await handler(world)(ready(user=user))
    assert not world.fetcher.calls
