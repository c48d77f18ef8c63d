"""The VideoReady handler with in-memory fakes of every port (no I/O)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from vidgen_common.events import (
    Envelope,
    GenerationCompleted,
    GenerationFailed,
    VideoReady,
    VideoUrlExpired,
)
from vidgen_common.transient import is_transient
from vidgen_media.errors import (
    InvalidVideo,
    StorageFailed,
    TransferBusy,
    TransientDownloadError,
    UrlExpired,
    VideoTooLarge,
)
from vidgen_media.handlers import Limits, VideoReadyHandler
from vidgen_media.pipeline import Pipeline
from vidgen_media.spool import Spool
from vidgen_testing import wait_until


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
    spool = Spool(world.spool_dir)
    pipeline = Pipeline(world.fetcher, world.prober, world.storage, spool)
    return VideoReadyHandler(
        world.uow,
        pipeline,
        Limits(**{"max_url_refreshes": 2, **limits}),
        world.storage,
        clock=world.clock,
    )


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


async def test_each_request_for_a_fresh_url_says_how_many_came_before(world) -> None:
    """The poller waits longer before each further refresh: it needs the count."""
    h = handler(world, max_url_refreshes=3)
    world.fetcher.errors = [UrlExpired("403")] * 3
    for _ in range(3):
        await h(ready())
    assert [e.refreshes for e in world.of_type(VideoUrlExpired)] == [1, 2, 3]


def test_the_default_refreshes_outlast_a_burst_of_short_lived_urls() -> None:
    """A succeeded task always yields its video: with Runway handing out URLs that expire
    before a download can start for a while, the default number of refreshes, spaced by the
    poller's backoff (at least half of each step), spans more than 45 s."""
    from vidgen_common.backoff import backoff_delay
    from vidgen_media.settings import MediaSettings

    n = MediaSettings.model_fields["max_url_refreshes"].default
    least = sum(backoff_delay(k - 1, cap_s=30.0, rng=_Zero()) for k in range(2, n + 1))
    assert least >= 45.0


class _Zero:
    def random(self) -> float:
        return 0.0


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


async def test_a_source_failing_again_and_again_gives_up_after_max_attempts(world) -> None:
    h = handler(world, max_attempts=3)
    world.fetcher.errors = [TransientDownloadError("503, 5 times")] * 3
    event = ready()
    for _ in range(2):
        with pytest.raises(TransientDownloadError):
            await h(event)
    await h(event)  # the third attempt reports instead of raising
    [failed] = world.of_type(GenerationFailed)
    assert failed.error_code == "download_failed"
    assert failed.error_message == "gave up after 3 attempts: 503, 5 times"
    assert world.rows["gen-1"].state == "failed"
    assert event.id in world.inbox


async def test_an_object_store_outage_is_waited_for_and_never_fails_the_video(world) -> None:
    """However long it lasts: our own dependency, not the video (a TransientError: the
    consumer retries it for as long as it takes and readiness says so)."""
    h = handler(world, max_attempts=3)
    world.fetcher.errors = [StorageFailed("S3 is down")] * 10
    event = ready()
    for _ in range(10):
        with pytest.raises(StorageFailed) as raised:
            await h(event)
        assert is_transient(raised.value)
    await h(event)
    assert len(world.of_type(GenerationCompleted)) == 1
    assert not world.of_type(GenerationFailed)
    assert world.rows["gen-1"].failures == 0


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


HOSTILE = ["a..b", "../x", "a/b", "..", "", "ünïcødé/💥", "x" * 200, "é" * 200, "\\x"]


@pytest.mark.parametrize("user", HOSTILE)
async def test_any_user_id_gets_its_video_stored_under_a_key_of_its_own(world, user) -> None:
    """A paid video is never dead-lettered for its owner's id (the gateway accepts ``a..b``)."""
    await handler(world)(ready(user=user))
    [done] = world.of_type(GenerationCompleted)
    prefix, owner, name = done.video_key.split("/")
    assert (prefix, name) == ("videos", "gen-1.mp4")
    assert owner not in ("", ".", "..")
    assert done.thumbnail_key == f"videos/{owner}/gen-1.jpg"
    assert done.video_key in world.storage.objects


def test_plain_ids_keep_their_keys_and_others_never_collide() -> None:
    from vidgen_media.keys import decode_segment, object_keys, segment

    assert object_keys("user-1", "gen-1") == ("videos/user-1/gen-1.mp4", "videos/user-1/gen-1.jpg")
    assert segment("google-oauth2|1234") == "google-oauth2|1234"
    ids = [*HOSTILE, "a.b", "!a", "!!a", "a", "A", "x" * 128, "x" * 129]
    segments = [segment(i) for i in ids]
    assert len(set(segments)) == len(ids)
    for i, seg in zip(ids, segments, strict=True):
        assert "/" not in seg
        assert ".." not in seg
        assert len(seg.encode()) <= 200
        assert decode_segment(seg) in (i, None)  # None: hashed (a very long id)
    assert decode_segment(segment("a..b")) == "a..b"


# -- one delivery at a time: the transfer's lease -------------------------------------------------


async def test_a_delivery_whose_lease_was_taken_over_writes_and_removes_nothing(world) -> None:
    """A stalled longer than its lease; B took over and completed; A then finds the video
    invalid (as a network error in the old check made it): B's video must stay."""
    a, b = handler(world, lease_s=30), handler(world, lease_s=30)
    event = ready()
    held = world.fetcher.hold_next()
    first = asyncio.create_task(a(event))
    await wait_until(lambda: world.fetcher.running == 1, within=5, what="A downloading")
    world.advance(31)  # A's lease runs out (its renewals never came)
    await b(event)
    [done] = world.of_type(GenerationCompleted)
    world.prober.errors = [InvalidVideo("the video does not decode")]
    held.set()
    await first
    assert done.video_key in world.storage.objects
    assert world.storage.removed == []
    assert len(world.emitted) == 1
    assert world.rows["gen-1"].state == "completed"


async def test_a_delivery_finding_a_live_lease_waits_for_it(world) -> None:
    a, b = handler(world, lease_s=30), handler(world, lease_s=30)
    event = ready()
    held = world.fetcher.hold_next()
    first = asyncio.create_task(a(event))
    await wait_until(lambda: world.fetcher.running == 1, within=5, what="A downloading")
    with pytest.raises(TransferBusy):
        await b(event)
    held.set()
    await first
    await b(event)  # retried later: done already
    assert len(world.fetcher.calls) == 1
    assert len(world.of_type(GenerationCompleted)) == 1


async def test_taking_over_a_transfer_aborts_the_upload_its_dead_delivery_left(world) -> None:
    from vidgen_common.storage import IncompleteUpload

    h = handler(world, lease_s=30)
    key = "videos/user-1/gen-1.mp4"
    held = world.fetcher.hold_next()
    crashed = asyncio.create_task(h(ready()))
    await wait_until(lambda: world.fetcher.running == 1, within=5, what="downloading")
    crashed.cancel()  # as if killed -9 mid-upload: no clean-up ran (lease left behind)
    world.rows["gen-1"].lease_token = "dead"
    world.storage.uploads["u-1"] = IncompleteUpload(key, "u-1", world.now)
    world.storage.uploads["u-2"] = IncompleteUpload("videos/user-1/other.mp4", "u-2", world.now)
    held.set()
    with pytest.raises(TransferBusy):
        await h(ready())  # the dead delivery's lease is still live
    world.advance(31)
    await h(ready())
    assert world.storage.aborted == ["u-1"]
    assert len(world.of_type(GenerationCompleted)) == 1


async def test_a_local_copy_is_checked_and_removed_afterwards(world) -> None:
    await handler(world)(ready())
    assert world.prober.calls == [world.fetcher.body]  # the very bytes stored
    assert list(world.spool_dir.iterdir()) == []


# -- dead letters ---------------------------------------------------------------------------------


async def test_a_dead_lettered_video_ready_fails_the_generation_once(world) -> None:
    from vidgen_media.dead_letters import MediaDeadLetters

    hook = MediaDeadLetters(world.uow, clock=world.clock)
    world.fetcher.errors = [TransientDownloadError("503")]
    event = ready()
    with pytest.raises(TransientDownloadError):
        await handler(world)(event)
    await hook(event, "RuntimeError('a bug')")
    await hook(event, "RuntimeError('a bug')")  # dead-lettered twice
    [failed] = world.of_type(GenerationFailed)
    assert (failed.stage, failed.error_code) == ("media", "event_dead_lettered")
    assert "a bug" in failed.error_message
    assert failed.cost_credits == 25
    await handler(world)(event)  # vidgen-dlq replay
    await handler(world)(ready())  # any other VideoReady of it
    assert len(world.emitted) == 1
    assert len(world.fetcher.calls) == 1


async def test_a_dead_letter_of_a_completed_generation_changes_nothing(world) -> None:
    from vidgen_media.dead_letters import MediaDeadLetters

    await handler(world)(ready())
    await MediaDeadLetters(world.uow, clock=world.clock)(ready(), "late duplicate")
    assert len(world.emitted) == 1
    assert world.rows["gen-1"].state == "completed"


async def test_a_dead_letter_waits_while_another_delivery_holds_the_transfer(world) -> None:
    from vidgen_media.dead_letters import MediaDeadLetters

    held = world.fetcher.hold_next()
    working = asyncio.create_task(handler(world)(ready()))
    await wait_until(lambda: world.fetcher.running == 1, within=5, what="downloading")
    with pytest.raises(TransferBusy):
        await MediaDeadLetters(world.uow, clock=world.clock)(ready(), "a bug")
    held.set()
    await working
    assert len(world.of_type(GenerationCompleted)) == 1
