"""The media service end to end: Kafka in and out, PostgreSQL, nanio, and Runway's simulator.

One service runs for the module (3 MiB cap, fast retries); every test has its own generation.
Output downloads are counted by the simulator (``calls.output``) or by the local server.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import av
import httpx
import pytest
from runwayml import AsyncRunwayML

from runway_sim.testing import AsyncSimHandle, async_simulator, fast_scenario
from runway_sim.testkit import data_uri, png_bytes
from vidgen_common.events import (
    Envelope,
    GenerationCompleted,
    GenerationFailed,
    VideoReady,
    VideoUrlExpired,
)
from vidgen_media.bootstrap import transfer_policy
from vidgen_media.transfer import HttpTransfer
from vidgen_testing import unique, wait_until

pytestmark = pytest.mark.integration

PAD = 400_000  # a `free` box after the MP4: big enough for faults mid-body, still a valid MP4
CLEAN = {"download_faults": {"next_n": 0}, "output_pad_bytes": 0, "output_url_ttl_s": 300.0}


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[AsyncSimHandle]:
    async with async_simulator(scenario=fast_scenario(seed=7)) as handle:
        yield handle


@pytest.fixture(scope="module")
async def runway(sim: AsyncSimHandle) -> AsyncIterator[AsyncRunwayML]:
    async with AsyncRunwayML(base_url=sim.base_url, api_key=sim.api_key, max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
async def task_id(runway: AsyncRunwayML) -> str:
    """One succeeded Runway task; every test stores its output under its own generation."""
    task = await runway.image_to_video.create(
        model="gen4_turbo",
        prompt_image=data_uri(png_bytes()),
        prompt_text="a slow pan over a misty lake",
        ratio="1280:720",
        duration=2,
    )

    async def succeeded() -> bool:
        return (await runway.tasks.retrieve(task.id)).status == "SUCCEEDED"

    await wait_until(succeeded, within=30, what="the simulated task to succeed")
    return task.id


@pytest.fixture
async def scenario(sim: AsyncSimHandle) -> AsyncIterator[AsyncSimHandle]:
    """The simulator, its download knobs put back afterwards."""
    yield sim
    await sim.set_scenario(CLEAN)


async def output_url(runway: AsyncRunwayML, task_id: str) -> str:
    """A fresh signed URL, as the poller would get it."""
    task = await runway.tasks.retrieve(task_id)
    assert task.output
    return str(task.output[0])


async def fetch_bytes(url: str) -> bytes:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.content


async def downloads(sim: AsyncSimHandle) -> int:
    return sum((await sim.counters())["calls"].get("output", {}).values())


def video_ready(generation_id: str, url: str, task: str = "task-x") -> Envelope[Any]:
    return Envelope(
        data=VideoReady(
            generation_id=generation_id,
            user_id="user-7",
            runway_task_id=task,
            output_urls=[url],
            fetched_at=datetime.now(UTC),
            cost_credits=10,
        ),
        source="/test/poller",
    )


def facts(data: bytes) -> tuple[str, int, int, float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        duration = float(stream.duration * stream.time_base)
        return stream.codec_context.name, stream.width, stream.height, round(duration, 3)


async def test_stores_the_video_and_a_redelivery_downloads_nothing(
    media, sim, runway, task_id
) -> None:
    gid = unique("gen-")
    url = await output_url(runway, task_id)
    expected = await fetch_bytes(url)
    before = await downloads(sim)
    event = video_ready(gid, url, task_id)
    await media.publish(event)

    [done] = await media.wait_for(gid, GenerationCompleted)
    assert (done.video_key, done.thumbnail_key) == (
        f"videos/user-7/{gid}.mp4",
        f"videos/user-7/{gid}.jpg",
    )
    assert (done.size_bytes, done.sha256) == (len(expected), hashlib.sha256(expected).hexdigest())
    assert (done.codec, done.width, done.height, done.duration_seconds) == facts(expected)
    assert (done.content_type, done.cost_credits, done.user_id) == ("video/mp4", 10, "user-7")
    assert await media.storage.get_bytes(done.video_key) == expected
    poster = await media.storage.stat(done.thumbnail_key)
    assert poster is not None
    assert poster.content_type == "image/jpeg"
    row = await media.row(gid)
    assert row is not None
    assert (row["state"], row["sha256"], row["attempts"]) == ("completed", done.sha256, 1)
    assert await downloads(sim) - before == 1

    handled = media.handled()
    await media.publish(event)  # redelivered
    await wait_until(
        lambda: media.handled() > handled, within=60, what="the redelivery to be handled"
    )
    assert await downloads(sim) - before == 1
    assert await media.outbox_count(gid) == 1  # written with the effect: no second event


async def test_a_new_delivery_finds_the_stored_video_and_does_not_download(
    media, sim, runway, task_id, tmp_path
) -> None:
    """As after a crash between storing and reporting: the row says stored, with a checksum."""
    gid = unique("gen-")
    key = f"videos/user-7/{gid}.mp4"
    url = await output_url(runway, task_id)
    async with httpx.AsyncClient() as client:
        transfer = HttpTransfer(client, media.storage, transfer_policy(media.settings))
        stored = await transfer.fetch(url, key, tmp_path / "copy")
    async with media.rt.sessions() as session, session.begin():
        from vidgen_common.db import run_sql

        await run_sql(
            session,
            "INSERT INTO transfers (generation_id, user_id, runway_task_id, state, video_key,"
            " event_id, attempts, size_bytes, sha256, etag) VALUES (:g, 'user-7', :t, 'stored',"
            " :k, 'an-earlier-event', 1, :s, :h, :e)",
            {
                "g": gid,
                "t": task_id,
                "k": key,
                "s": stored.size,
                "h": stored.sha256,
                "e": stored.etag,
            },
        )
    before = await downloads(sim)
    await media.publish(video_ready(gid, await output_url(runway, task_id), task_id))

    [done] = await media.wait_for(gid, GenerationCompleted)
    assert done.sha256 == stored.sha256
    assert await downloads(sim) == before
    row = await media.row(gid)
    assert row is not None
    assert (row["state"], row["attempts"]) == ("completed", 2)


@pytest.mark.parametrize("mode", ["truncate", "reset"])
async def test_a_cut_download_is_resumed_and_the_checksum_is_right(
    media, scenario, runway, task_id, mode
) -> None:
    gid = unique("gen-")
    await scenario.set_scenario({"output_pad_bytes": PAD})
    url = await output_url(runway, task_id)
    expected = await fetch_bytes(url)
    assert len(expected) > PAD
    faults_before = (await scenario.counters())["faults"].get(f"download_{mode}", 0)
    before = await downloads(scenario)
    await scenario.set_scenario(
        {"download_faults": {"next_n": 1, "mode": mode, "after_bytes": 200_000}}
    )
    await media.publish(video_ready(gid, url, task_id))

    [done] = await media.wait_for(gid, GenerationCompleted)
    assert (done.size_bytes, done.sha256) == (len(expected), hashlib.sha256(expected).hexdigest())
    assert await media.storage.get_bytes(done.video_key) == expected
    counters = await scenario.counters()
    assert counters["faults"].get(f"download_{mode}", 0) == faults_before + 1
    assert await downloads(scenario) - before == 2  # the cut request and one resumed request
    row = await media.row(gid)
    assert row is not None
    assert (row["requests"], row["resumes"], row["restarts"]) == (2, 1, 0)


async def test_a_cut_download_from_a_server_without_ranges_restarts(
    media, video_server, fault, sample_mp4
) -> None:
    gid = unique("gen-")
    cut = [fault("close", after=600_000)]
    route = video_server.serve(f"/{gid}/0.mp4", sample_mp4, ranges=False, faults=cut)
    await media.publish(video_ready(gid, video_server.url(f"/{gid}/0.mp4")))

    [done] = await media.wait_for(gid, GenerationCompleted)
    assert done.sha256 == hashlib.sha256(sample_mp4).hexdigest()
    assert await media.storage.get_bytes(done.video_key) == sample_mp4
    assert [r["status"] for r in route.gets] == [200, 200]
    row = await media.row(gid)
    assert row is not None
    assert (row["requests"], row["resumes"], row["restarts"]) == (2, 0, 1)


async def test_an_expired_url_is_reported_and_a_fresh_one_completes_it(
    media, scenario, runway, task_id
) -> None:
    gid = unique("gen-")
    await scenario.set_scenario({"output_url_ttl_s": 0.2})
    stale = await output_url(runway, task_id)
    expires = float(parse_qs(urlsplit(stale).query)["Expires"][0])
    await scenario.set_scenario({"output_url_ttl_s": 300.0})
    await wait_until(lambda: time.time() > expires + 0.05, what="the URL to expire")
    await media.publish(video_ready(gid, stale, task_id))

    [asked] = await media.wait_for(gid, VideoUrlExpired)
    assert (asked.runway_task_id, asked.user_id) == (task_id, "user-7")
    row = await media.row(gid)
    assert row is not None
    assert (row["state"], row["url_refreshes"]) == ("waiting_for_url", 1)
    assert not media.emitted(gid, GenerationFailed)

    fresh = await output_url(runway, task_id)  # what the poller does on VideoUrlExpired
    await media.publish(video_ready(gid, fresh, task_id))
    [done] = await media.wait_for(gid, GenerationCompleted)
    expected = await fetch_bytes(fresh)
    assert done.sha256 == hashlib.sha256(expected).hexdigest()
    assert len(media.emitted(gid, VideoUrlExpired)) == 1


async def test_a_video_over_the_cap_is_rejected_and_nothing_is_stored(
    media, scenario, runway, task_id
) -> None:
    gid = unique("gen-")
    await scenario.set_scenario({"output_pad_bytes": 4 * 1024 * 1024})  # the cap is 3 MiB
    await media.publish(video_ready(gid, await output_url(runway, task_id), task_id))

    [failed] = await media.wait_for(gid, GenerationFailed)
    assert (failed.error_code, failed.stage, failed.runway_task_id) == (
        "video_too_large",
        "media",
        task_id,
    )
    assert "over the cap" in failed.error_message
    assert await media.storage.stat(f"videos/user-7/{gid}.mp4") is None
    row = await media.row(gid)
    assert row is not None
    assert (row["state"], row["error_code"]) == ("failed", "video_too_large")


async def test_a_body_that_is_no_video_is_rejected_and_removed(media, video_server) -> None:
    gid = unique("gen-")
    page = b"<html><body>" + b"Sorry, this file is not available. " * 200 + b"</body></html>"
    route = video_server.serve(f"/{gid}/0.mp4", page, content_type="text/html")
    await media.publish(video_ready(gid, video_server.url(f"/{gid}/0.mp4")))

    [failed] = await media.wait_for(gid, GenerationFailed)
    assert failed.error_code == "invalid_video"
    assert "not a media file" in failed.error_message
    assert len(route.gets) == 1
    assert await media.storage.stat(f"videos/user-7/{gid}.mp4") is None
    assert await media.storage.stat(f"videos/user-7/{gid}.jpg") is None
    assert not media.emitted(gid, GenerationCompleted)


async def test_a_source_failing_for_a_while_is_retried_through_redelivery(
    media, video_server, fault, sample_mp4
) -> None:
    gid = unique("gen-")
    errors = [fault("status", status=503)] * 4  # one more than a download tolerates
    route = video_server.serve(f"/{gid}/0.mp4", sample_mp4, faults=errors)
    await media.publish(video_ready(gid, video_server.url(f"/{gid}/0.mp4")))

    [done] = await media.wait_for(gid, GenerationCompleted)
    assert done.sha256 == hashlib.sha256(sample_mp4).hexdigest()
    assert [r["status"] for r in route.gets] == [503, 503, 503, 503, 206]
    row = await media.row(gid)
    assert row is not None
    assert (row["attempts"], row["failures"], row["state"]) == (2, 1, "completed")
    assert not media.emitted(gid, GenerationFailed)


async def test_many_generations_in_parallel_each_complete_once(
    media, video_server, sample_mp4
) -> None:
    gids = [unique("gen-") for _ in range(4)]
    for gid in gids:
        video_server.serve(f"/{gid}/0.mp4", sample_mp4)
    await asyncio.gather(
        *(media.publish(video_ready(g, video_server.url(f"/{g}/0.mp4"))) for g in gids)
    )
    for gid in gids:
        [done] = await media.wait_for(gid, GenerationCompleted)
        assert done.size_bytes == len(sample_mp4)


@pytest.mark.parametrize("user", ["a..b", "../x", "a/b", "ünïcødé 💥", "é" * 200])
async def test_hostile_user_ids_get_their_video_stored_and_readable(
    media, video_server, sample_mp4, user
) -> None:
    gid = unique("gen-")
    video_server.serve(f"/{gid}/0.mp4", sample_mp4)
    event = video_ready(gid, video_server.url(f"/{gid}/0.mp4"))
    event = Envelope(data=event.data.model_copy(update={"user_id": user}), source="/test")
    await media.publish(event)

    [done] = await media.wait_for(gid, GenerationCompleted)
    assert done.video_key.startswith("videos/!")
    assert done.video_key.endswith(f"/{gid}.mp4")
    assert await media.storage.get_bytes(done.video_key) == sample_mp4
    assert await media.storage.stat(done.thumbnail_key) is not None
    listed = [o async for o in list_keys(media.storage, "videos/")]
    assert done.video_key in listed


async def list_keys(storage: Any, prefix: str) -> AsyncIterator[str]:
    """Every key under ``prefix`` as the store lists it (no client-side path games)."""
    objects = await asyncio.to_thread(
        lambda: list(storage._client.list_objects(storage.bucket, prefix=prefix, recursive=True))
    )
    for obj in objects:
        yield obj.object_name
