"""Media under real faults: reads from the store cut by a TCP reset, two deliveries of one
video at once. PostgreSQL, Kafka, nanio (behind a proxy that breaks connections) and a local
HTTP source; the service's verdicts are checked against the stored bytes."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from vidgen_common.db import run_sql
from vidgen_common.errors import TransientError
from vidgen_common.events import Envelope, GenerationCompleted, GenerationFailed, VideoReady
from vidgen_common.transient import is_transient
from vidgen_media.bootstrap import build_handler, sql_uow
from vidgen_testing import unique, wait_until

pytestmark = pytest.mark.integration


def video_ready(gid: str, url: str) -> Envelope[Any]:
    return Envelope(
        data=VideoReady(
            generation_id=gid,
            user_id="user-7",
            runway_task_id="task-x",
            output_urls=[url],
            fetched_at=datetime.now(UTC),
            cost_credits=10,
        ),
        source="/test/poller",
    )


async def test_a_read_reset_while_checking_the_video_never_makes_it_invalid(
    proxied_media, s3_proxy, video_server, make_video
) -> None:
    """Before, the check read the object back through a presigned URL: a reset inside the
    demuxer became InvalidVideo, the object was removed and the generation failed."""
    gid = unique("gen-")
    body = make_video(frames=48, faststart=True)
    video_server.serve(f"/{gid}/0.mp4", body)
    key = f"videos/user-7/{gid}.mp4"
    s3_proxy.arm(f"/videos/user-7/{gid}\\.mp4", after=len(body) // 3, times=5)
    gets_before = len([g for g in s3_proxy.gets if gid in g])
    await proxied_media.publish(video_ready(gid, video_server.url(f"/{gid}/0.mp4")))

    [done] = await proxied_media.wait_for(gid, GenerationCompleted)
    # checked from the local copy: the object was never read back to be checked
    assert [g for g in s3_proxy.gets if gid in g][gets_before:] == []
    s3_proxy.disarm()
    assert not proxied_media.emitted(gid, GenerationFailed)
    assert done.sha256 == hashlib.sha256(body).hexdigest()
    assert await proxied_media.storage.get_bytes(key) == body


async def test_a_read_reset_while_reading_back_a_stored_video_is_retried(
    proxied_media, s3_proxy, video_server, make_video
) -> None:
    """A delivery after a crash finds the video stored; reading it back is cut once."""
    gid = unique("gen-")
    body = make_video(frames=48, faststart=True)
    route = video_server.serve(f"/{gid}/0.mp4", body)
    key = f"videos/user-7/{gid}.mp4"
    stored = await proxied_media.storage.put_bytes(key, body, "video/mp4")
    async with proxied_media.rt.sessions() as session, session.begin():
        await run_sql(
            session,
            "INSERT INTO transfers (generation_id, user_id, runway_task_id, state, video_key,"
            " event_id, attempts, size_bytes, sha256, etag) VALUES (:g, 'user-7', 'task-x',"
            " 'stored', :k, 'an-earlier-event', 1, :s, :h, :e)",
            {
                "g": gid,
                "k": key,
                "s": len(body),
                "h": hashlib.sha256(body).hexdigest(),
                "e": (stored.etag or "").strip('"'),
            },
        )
    resets = s3_proxy.resets
    s3_proxy.arm(f"/videos/user-7/{gid}\\.mp4", after=len(body) // 3, times=1)
    await proxied_media.publish(video_ready(gid, video_server.url(f"/{gid}/0.mp4")))

    [done] = await proxied_media.wait_for(gid, GenerationCompleted)
    s3_proxy.disarm()
    assert s3_proxy.resets == resets + 1
    assert not proxied_media.emitted(gid, GenerationFailed)
    assert done.sha256 == hashlib.sha256(body).hexdigest()
    assert await proxied_media.storage.get_bytes(key) == body
    assert route.gets == []  # never downloaded from the source again


async def test_two_deliveries_at_once_make_one_transfer_and_keep_the_video(
    media, video_server, sample_mp4
) -> None:
    """A transfer longer than the poll interval: the group hands the same VideoReady to a
    second consumer while the first is still downloading."""
    gid = unique("gen-")
    hold = asyncio.Event()
    route = video_server.serve(f"/{gid}/0.mp4", sample_mp4, hold=hold)
    envelope = video_ready(gid, video_server.url(f"/{gid}/0.mp4"))
    async with httpx.AsyncClient() as client:
        first, second = (
            build_handler(media.settings, sql_uow(media.rt), client, media.storage)
            for _ in range(2)
        )
        a = asyncio.create_task(first(envelope))
        await wait_until(lambda: len(route.gets) == 1, within=30, what="the first download")
        b = asyncio.create_task(second(envelope))
        await wait_until(
            lambda: b.done() or len(route.gets) > 1, within=30, what="the second delivery"
        )
        assert len(route.gets) == 1  # the second delivery did not download it too
        with pytest.raises(TransientError) as busy:
            await b
        assert is_transient(busy.value)  # the consumer tries it again later
        hold.set()
        await a
        await second(envelope)  # the consumer's retry: the generation is done
    assert len(route.gets) == 1
    assert await media.outbox_count(gid) == 1
    row = await media.row(gid)
    assert row is not None
    assert (row["state"], row["lease_token"]) == ("completed", None)
    assert await media.storage.get_bytes(row["video_key"]) == sample_mp4


async def test_the_sweep_redrives_a_transfer_nobody_works_on_in_postgresql(
    media, video_server, sample_mp4
) -> None:
    """A row left 'downloading' with no lease (its delivery is gone): the sweep asks for a
    fresh VideoReady; the one that comes (the poller's answer) completes it."""
    from prometheus_client import CollectorRegistry

    from vidgen_common.events import VideoUrlExpired
    from vidgen_media.bootstrap import media_spool
    from vidgen_media.sweeper import Sweeper, SweepMetrics

    gid, busy = unique("gen-"), unique("gen-")
    async with media.rt.sessions() as session, session.begin():
        for g, leased in ((gid, False), (busy, True)):
            await run_sql(
                session,
                "INSERT INTO transfers (generation_id, user_id, runway_task_id, state, video_key,"
                " event_id, attempts, updated_at, lease_token, lease_expires_at) VALUES (:g,"
                " 'user-7', 'task-x', 'downloading', :k, 'e', 1, now() - interval '1 hour',"
                " CASE WHEN :leased THEN 't' END,"
                " CASE WHEN :leased THEN now() + interval '1 hour' END)",
                {"g": g, "k": f"videos/user-7/{g}.mp4", "leased": leased},
            )
    sweeper = Sweeper(
        sql_uow(media.rt),
        media.storage,
        media_spool(media.settings),
        media.settings,
        SweepMetrics(CollectorRegistry()),
    )
    swept = await sweeper.sweep_once()
    assert swept.redriven >= 1
    [asked] = await media.wait_for(gid, VideoUrlExpired)
    assert (asked.runway_task_id, asked.user_id) == ("task-x", "user-7")
    row = await media.row(gid)
    assert row is not None
    assert (row["state"], row["redrives"]) == ("waiting_for_url", 1)
    assert (await media.row(busy) or {})["redrives"] == 0  # a live lease: left alone

    video_server.serve(f"/{gid}/0.mp4", sample_mp4)
    await media.publish(video_ready(gid, video_server.url(f"/{gid}/0.mp4")))
    [done] = await media.wait_for(gid, GenerationCompleted)
    assert done.sha256 == hashlib.sha256(sample_mp4).hexdigest()


async def test_a_poison_video_ready_is_dead_lettered_and_its_generation_fails_explained(
    media,
) -> None:
    """Through the real consumer: a user id PostgreSQL cannot store (a NUL character) fails
    every try the same way; the DLQ, then media's hook, then a harmless replay."""
    gid = unique("gen-")
    event = video_ready(gid, "http://127.0.0.1:9/never-fetched.mp4")
    poison = Envelope(data=event.data.model_copy(update={"user_id": "u\x00ser"}), source="/t")
    await media.publish(poison)
    [failed] = await media.wait_for(gid, GenerationFailed)
    assert (failed.stage, failed.error_code) == ("media", "event_dead_lettered")
    assert failed.cost_credits == 10
    handled = media.handled()
    await media.publish(poison)  # vidgen-dlq replay
    await wait_until(lambda: media.handled() > handled, within=60, what="the replay")
    assert await media.outbox_count(gid) == 1
