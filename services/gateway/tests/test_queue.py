"""A waiting generation's place, reason and estimates, as the status API, the list and the
live stream show them (real PostgreSQL; the other services' events fed to the projection)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from vidgen_common.events import (
    GenerationCompleted,
    GenerationRequested,
    TaskSubmitted,
    VideoReady,
)
from vidgen_gateway.queue import Queue, play
from vidgen_gateway.queue import _at as at_ms
from vidgen_gateway.settings import GatewaySettings
from vidgen_testing.sse import Stream

Json = dict[str, Any]


@pytest.fixture
def settings(settings: GatewaySettings) -> GatewaySettings:
    return settings.model_copy(
        update={
            "max_in_flight_per_user": 20,
            "generate_rate_limit": 50,
            "user_weights": {"heavy": 2.0},
            "queue_refresh_s": 0.2,
        }
    )


@pytest.fixture
def status(
    client: httpx.AsyncClient, auth: Callable[[str], dict[str, str]]
) -> Callable[[str, str], Awaitable[Json]]:
    async def do(user: str, gid: str) -> Json:
        r = await client.get(f"/api/videos/status/{gid}", headers=auth(user))
        assert r.status_code == 200, r.text
        body: Json = r.json()
        return body

    return do


def _submitted(
    gid: str, user: str, *, slots: int | None = 2, at: datetime | None = None
) -> TaskSubmitted:
    return TaskSubmitted(
        generation_id=gid,
        user_id=user,
        runway_task_id=f"task-{gid}",
        model="gen4_turbo",
        duration=5,
        submitted_at=at or datetime.now(UTC),
        model_concurrency=slots,
    )


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_newcomer_is_next_whatever_a_flooding_user_has_queued(
    generate: Any, feed: Any, status: Any
) -> None:
    running = [await generate("flood") for _ in range(2)]
    for gid in running:
        await feed(_submitted(gid, "flood"))  # the model's 2 slots are taken
    waiting = [await generate("flood") for _ in range(5)]
    single = await generate("single")

    mine = await status("single", single)
    assert mine["status"] == "queued"
    assert (mine["queuePosition"], mine["queueReason"]) == (1, "waiting_for_capacity")
    firsts = [await status("flood", gid) for gid in waiting]
    assert [s["queuePosition"] for s in firsts] == [2, 3, 4, 5, 6]
    # it starts when the first running task should end (no history: the prior, 12 s per
    # second of video), the flooder's next when the second one should
    started = _at(firsts[0]["estimatedStartAt"])
    assert _at(mine["estimatedStartAt"]) <= started
    assert _at(mine["estimatedCompletionAt"]) < _at(mine["estimatedCompletionP90At"])
    run = await status("flood", running[0])
    assert (run["queuePosition"], run["queueReason"]) == (None, None)
    assert run["estimatedStartAt"] is not None
    assert _at(run["estimatedCompletionAt"]) <= _at(mine["estimatedCompletionAt"])


async def test_priority_orders_a_users_own_queue_only(
    generate: Any, feed: Any, status: Any
) -> None:
    blocker = await generate("other")
    await feed(_submitted(blocker, "other", slots=1))
    normal = await generate("alice")
    low = await generate("alice", priority="low")
    high = await generate("alice", priority="high")
    bob = await generate("bob")
    got = {n: await status("alice", g) for n, g in (("n", normal), ("l", low), ("h", high))}
    assert got["h"]["priority"] == "high"
    # alice's high first, then bob's first (round-robin), then alice's normal and low
    assert (await status("bob", bob))["queuePosition"] == 2
    assert [got[k]["queuePosition"] for k in ("h", "n", "l")] == [1, 3, 4]


async def test_weights_give_a_user_a_larger_share(generate: Any, status: Any) -> None:
    heavy = [await generate("heavy") for _ in range(4)]
    light = [await generate("light") for _ in range(3)]
    # scores: heavy 0.5, 1, 1.5, 2; light 1, 2, 3 (ties: the older request first)
    assert [(await status("heavy", g))["queuePosition"] for g in heavy] == [1, 2, 4, 5]
    assert [(await status("light", g))["queuePosition"] for g in light] == [3, 6, 7]
    # nothing runs and the capacity is unknown: the first is being sent
    assert (await status("heavy", heavy[0]))["queueReason"] == "submitting"


async def _finish_one(
    generate: Any,
    feed: Any,
    *,
    start: datetime,
    asked: datetime | None = None,
    task_s: float = 8.0,
) -> None:
    """A 5 s video of "past" whose task took 8 s (``task_s``), then 1 s to store; asked for
    now (through the API) or at ``asked`` (its request event)."""
    if asked is None:
        gid = await generate("past")
    else:
        gid = f"past-{asked.timestamp()}"
        await feed(
            GenerationRequested(
                generation_id=gid,
                project_id="p-past",
                user_id="past",
                image_key="images/past/a.png",
                image_content_type="image/png",
                prompt="a slow pan over a misty lake",
                model="gen4_turbo",
                ratio="1280:720",
                duration=5,
                requested_at=asked,
            )
        )
    await feed(_submitted(gid, "past", slots=1, at=start))
    await feed(
        VideoReady(
            generation_id=gid,
            user_id="past",
            runway_task_id=f"task-{gid}",
            output_urls=["https://runway.example/out.mp4"],
            fetched_at=start + timedelta(seconds=task_s),
        )
    )
    await feed(
        GenerationCompleted(
            generation_id=gid,
            user_id="past",
            video_key="v.mp4",
            thumbnail_key="v.jpg",
            size_bytes=1,
            sha256="ab" * 32,
            duration_seconds=5.0,
            width=1280,
            height=720,
            codec="h264",
            completed_at=start + timedelta(seconds=task_s + 1),
        )
    )


async def test_the_first_finished_task_replaces_the_prior_at_once(
    generate: Any, feed: Any, status: Any
) -> None:
    # the prior (12 s per video second) was kept for 30 s once read: a backlog asked for
    # just before the first tasks ended got estimates many times too long
    waiting = await generate("bob")
    before = await status("bob", waiting)
    assert _at(before["estimatedCompletionAt"]) > datetime.now(UTC) + timedelta(seconds=55)
    await _finish_one(generate, feed, start=datetime.now(UTC) - timedelta(seconds=20))
    after = await status("bob", waiting)
    assert _at(after["estimatedCompletionAt"]) < datetime.now(UTC) + timedelta(seconds=12)


@pytest.mark.parametrize("replica", ["same", "another"])
async def test_the_time_left_never_grows_when_longer_tasks_are_learnt(
    generate: Any, feed: Any, status: Any, gateway: Any, settings: GatewaySettings, replica: str
) -> None:
    # a waiting user watches the time left: tasks that turn out longer than the prior must not
    # push it back up (it was shown growing by a second or more once the first tasks ended),
    # also when the next read reaches another gateway replica (a client polling behind a load
    # balancer), one that never showed this estimate
    running = await generate("alice")
    await feed(_submitted(running, "alice", slots=1))
    waiting = await generate("bob")
    shown = [await status("bob", waiting), await status("alice", running)]
    await _finish_one(generate, feed, start=datetime.now(UTC) - timedelta(seconds=300), task_s=200)
    if replica == "another":
        gateway.app.state.queue = Queue(settings)  # its caches empty, nothing shown by it
    again = [await status("bob", waiting), await status("alice", running)]
    for before, after in zip(shown, again, strict=True):
        for field in ("estimatedStartAt", "estimatedCompletionAt", "estimatedCompletionP90At"):
            assert _at(after[field]) <= _at(before[field]) + timedelta(seconds=5), field
    # what it learnt still counts for what is asked for later
    later = await status("carol", await generate("carol"))
    assert _at(later["estimatedCompletionAt"]) > _at(again[0]["estimatedCompletionAt"]) + timedelta(
        seconds=150
    )


async def test_the_estimate_moves_back_when_a_generation_is_placed_ahead(
    generate: Any, feed: Any, status: Any
) -> None:
    # fair share: a newcomer goes ahead of a flooding user's queue, whose estimate moves back
    running = await generate("alice")
    await feed(_submitted(running, "alice", slots=1))
    queued = await generate("alice")
    before = await status("alice", queued)
    assert before["queuePosition"] == 1
    await generate("carol")
    after = await status("alice", queued)
    assert after["queuePosition"] == 2
    assert _at(after["estimatedCompletionAt"]) > _at(before["estimatedCompletionAt"]) + timedelta(
        seconds=30
    )


async def test_estimates_come_from_the_tasks_that_finished(
    generate: Any, feed: Any, status: Any
) -> None:
    now = datetime.now(UTC)
    for i in range(3):  # tasks of 8 s, then 1 s to store the video
        await _finish_one(generate, feed, start=now - timedelta(seconds=60 - i))
    running = await generate("alice")
    began = datetime.now(UTC) - timedelta(seconds=2)
    await feed(_submitted(running, "alice", slots=1, at=began))
    queued = await generate("bob")

    run = await status("alice", running)
    assert _at(run["estimatedCompletionAt"]) == pytest.approx(
        began + timedelta(seconds=9), abs=timedelta(milliseconds=5)
    )
    wait = await status("bob", queued)
    assert (wait["queuePosition"], wait["queueReason"]) == (1, "waiting_for_capacity")
    # it takes the slot VIDGEN_ETA_REFILL_S (0.4 s) after the running task's end
    assert _at(wait["estimatedStartAt"]) == pytest.approx(
        began + timedelta(seconds=8.4), abs=timedelta(milliseconds=5)
    )
    assert _at(wait["estimatedCompletionAt"]) == pytest.approx(
        began + timedelta(seconds=17.4), abs=timedelta(milliseconds=5)
    )


async def test_the_list_and_the_stream_show_the_place_as_it_moves(
    client: httpx.AsyncClient,
    base_url: str,
    auth: Any,
    generate: Any,
    feed: Any,
    downstream: Any,
) -> None:
    first = await generate("alice")
    await feed(_submitted(first, "alice", slots=1))
    ahead = await generate("carol")  # nothing running: ahead of bob, who asked later
    await generate("alice")  # alice has a task running: behind both
    mine = await generate("bob")
    page = (await client.get("/api/videos", headers=auth("bob"))).json()
    assert [(i["generationId"], i["queuePosition"]) for i in page["items"]] == [(mine, 2)]

    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as live,
        live.stream("GET", f"/api/videos/{mine}/events", headers=auth("bob")) as r,
    ):
        stream = Stream(r)
        got = await stream.next_event()
        assert got is not None
        assert got["data"]["queuePosition"] == 2
        version = got["id"]
        # the generation ahead is cancelled: this one moves up, its own version unchanged
        cancel = await client.post(f"/api/videos/{ahead}/cancel", headers=auth("carol"))
        assert cancel.status_code == 202
        got = await stream.next_event(within=10)
        assert got is not None
        assert (got["id"], got["data"]["queuePosition"]) == (version, 1)
        await feed(downstream(mine, "bob").submitted())
        got = await stream.next_event(within=10)
        assert got is not None
        assert got["data"]["status"] == "generating"
        assert got["data"]["queuePosition"] is None


async def test_a_finished_generation_has_no_estimate(
    generate: Any, feed: Any, downstream: Any, status: Any, runtime: Any
) -> None:
    async def held() -> int:
        async with runtime.engine.connect() as conn:
            sql = text("SELECT count(*) FROM shown_estimates WHERE generation_id = :g")
            return int((await conn.execute(sql, {"g": gid})).scalar_one())

    gid = await generate("alice")
    assert (await status("alice", gid))["estimatedCompletionAt"] is not None
    assert await held() == 1  # what was shown is held, for every replica
    await feed(downstream(gid, "alice").failed())
    body = await status("alice", gid)
    assert body["queuePosition"] is None
    assert (body["estimatedStartAt"], body["estimatedCompletionAt"]) == (None, None)
    assert await held() == 0  # and forgotten once it ended


def test_playing_the_slots_forward() -> None:
    # 2 slots, tasks ending at 10 and 20; 3 of 5 s ahead: 10-15 and 15-20 in the first slot,
    # 20-25 in the second: ours starts at 20, in the first
    assert play(0.0, 2, [10.0, 20.0], [(5.0, 3)]) == 20.0
    assert play(0.0, 2, [10.0, 20.0], [(5.0, 4)]) == 25.0
    # a free slot: now
    assert play(0.0, 3, [10.0], [(5.0, 1)]) == 0.0
    # more running than slots (the budget shrank): after enough of them ended
    assert play(0.0, 1, [10.0, 20.0], []) == 20.0
    # far more ahead than played one by one: the fluid estimate
    assert play(0.0, 2, [0.0, 0.0], [(1.0, 10_000)]) == pytest.approx(5_000.0)


def _waiting(gid: str, user: str, reason: str, until: datetime | None = None) -> Any:
    from vidgen_common.events import GenerationWaiting

    return GenerationWaiting(
        generation_id=gid,
        user_id=user,
        model="gen4_turbo",
        reason=reason,  # type: ignore[arg-type]
        until=until,
        observed_at=datetime.now(UTC),
    )


async def test_the_generators_reason_to_hold_it_back_is_shown_until_it_starts(
    generate: Any, feed: Any, status: Any
) -> None:
    gid = await generate("alice")
    resets = datetime.now(UTC) + timedelta(hours=3)
    await feed(_waiting(gid, "alice", "daily_cap_reached", resets))
    body = await status("alice", gid)
    assert (body["queueReason"], _at(body["waitingUntil"])) == ("daily_cap_reached", resets)
    assert _at(body["estimatedStartAt"]) >= resets
    assert _at(body["estimatedCompletionAt"]) > resets

    await feed(_waiting(gid, "alice", "organization_out_of_credits"))
    body = await status("alice", gid)
    assert (body["queueReason"], body["waitingUntil"]) == ("organization_out_of_credits", None)
    assert (body["estimatedStartAt"], body["estimatedCompletionAt"]) == (None, None)
    assert body["queuePosition"] == 1

    await feed(_waiting(gid, "alice", "waiting_for_capacity"))
    body = await status("alice", gid)
    assert body["queueReason"] == "submitting"  # nothing runs: it goes at once
    assert body["estimatedStartAt"] is not None

    await feed(_waiting(gid, "alice", "daily_cap_reached", resets))
    await feed(_submitted(gid, "alice"))
    await feed(_waiting(gid, "alice", "organization_out_of_credits"))  # late: ignored
    body = await status("alice", gid)
    assert (body["status"], body["queueReason"], body["waitingUntil"]) == (
        "generating",
        None,
        None,
    )


def test_an_estimate_is_never_shown_earlier_than_the_moment_it_stands_for() -> None:
    # the daily-cap start is max(estimate, waitingUntil): rounding it to the nearest
    # millisecond showed it up to half a millisecond before waitingUntil
    for micros in (0, 1, 499, 500, 501, 999_999, 10_267, 10_999):
        moment = datetime(2026, 12, 3, 0, 31, 10, micros, tzinfo=UTC)
        shown = at_ms(moment.timestamp())
        assert shown >= moment
        assert shown - moment < timedelta(milliseconds=1)
        assert shown.microsecond % 1000 == 0


async def test_the_slots_turnover_is_learnt_from_the_waiting_ones_submissions(
    generate: Any, feed: Any, status: Any
) -> None:
    # one slot: the second was asked for while the first ran and went 0.7 s after its end
    t = datetime.now(UTC) - timedelta(seconds=60)
    await _finish_one(generate, feed, asked=t, start=t)
    await _finish_one(
        generate, feed, asked=t + timedelta(seconds=1), start=t + timedelta(seconds=8.7)
    )
    running = await generate("alice")
    began = datetime.now(UTC) - timedelta(seconds=2)
    await feed(_submitted(running, "alice", slots=1, at=began))
    queued = await generate("bob")
    wait = await status("bob", queued)
    assert _at(wait["estimatedStartAt"]) == pytest.approx(
        began + timedelta(seconds=8.7), abs=timedelta(milliseconds=5)
    )
