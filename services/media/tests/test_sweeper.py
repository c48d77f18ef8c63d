"""The media sweep with in-memory fakes: stalled transfers, abandoned uploads, old copies."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from vidgen_common.events import GenerationFailed, VideoUrlExpired
from vidgen_common.storage import IncompleteUpload
from vidgen_media.models import Transfer
from vidgen_media.settings import MediaSettings
from vidgen_media.spool import Spool
from vidgen_media.sweeper import Sweeper, SweepMetrics


def sweeper(world: Any, **settings: Any) -> tuple[Sweeper, SweepMetrics]:
    values = {"stall_after_s": 600, "max_redrives": 2, "abandoned_upload_s": 3600, **settings}
    metrics = SweepMetrics(CollectorRegistry())
    s = Sweeper(
        world.uow, world.storage, Spool(world.spool_dir), MediaSettings(**values), metrics,
        clock=world.clock,
    )  # fmt: skip
    return s, metrics


def transfer(world: Any, gid: str, state: str, **fields: Any) -> Transfer:
    row = Transfer(
        generation_id=gid,
        user_id="user-1",
        runway_task_id=f"task-{gid}",
        state=state,
        video_key=f"videos/user-1/{gid}.mp4",
        event_id="e",
        updated_at=world.now,
        **fields,
    )
    world.rows[gid] = row
    return row


async def test_a_transfer_nobody_works_on_is_redriven_then_failed(world) -> None:
    s, metrics = sweeper(world)
    for gid, state in [("g1", "downloading"), ("g2", "waiting_for_url"), ("g3", "stored")]:
        transfer(world, gid, state)
    transfer(
        world, "g4", "downloading", lease_token="t", lease_expires_at=world.now + timedelta(hours=1)
    )
    transfer(world, "g5", "completed")
    world.advance(300)
    assert (await s.sweep_once()).redriven == 0  # not stalled for long enough yet
    world.advance(301)
    assert (await s.sweep_once()).redriven == 3
    asked = sorted(e.generation_id for e in world.of_type(VideoUrlExpired))
    assert asked == ["g1", "g2", "g3"]
    assert {world.rows[g].state for g in ("g1", "g2", "g3")} == {"waiting_for_url"}
    assert world.of_type(VideoUrlExpired)[0].runway_task_id.startswith("task-")
    for _ in range(2):
        world.advance(601)
        await s.sweep_once()
    failed = world.of_type(GenerationFailed)
    assert sorted(f.generation_id for f in failed) == ["g1", "g2", "g3"]
    assert {f.error_code for f in failed} == {"media_stalled"}
    assert len(world.of_type(VideoUrlExpired)) == 6  # max_redrives each
    assert world.rows["g4"].state == "downloading"  # a live lease: being worked on
    assert metrics.stalled.labels("failed")._value.get() == 3
    assert metrics.stalled.labels("redrive")._value.get() == 6
    world.advance(601)
    await s.sweep_once()
    assert len(world.emitted) == 9  # terminal rows are left alone


async def test_abandoned_uploads_are_aborted_unless_their_transfer_is_being_worked_on(
    world,
) -> None:
    s, metrics = sweeper(world, abandoned_upload_s=3600)
    old = world.now - timedelta(hours=2)
    world.storage.uploads = {
        "dead": IncompleteUpload("videos/user-1/g1.mp4", "dead", old),
        "live": IncompleteUpload("videos/user-1/g2.mp4", "live", old),
        "young": IncompleteUpload("videos/user-1/g3.mp4", "young", world.now),
        "image": IncompleteUpload("images/user-1/p.png", "image", old),
    }
    transfer(
        world,
        "g2",
        "downloading",
        lease_token="t",
        lease_expires_at=world.now + timedelta(minutes=1),
    )
    assert (await s.sweep_once()).aborted == 1
    assert world.storage.aborted == ["dead"]
    assert metrics.aborted._value.get() == 1


async def test_local_copies_left_by_a_killed_process_are_removed(world) -> None:
    s, _ = sweeper(world)
    spool = Spool(world.spool_dir, max_age_s=3600)
    with spool.reserve("g1") as live:
        live.write_bytes(b"being checked")
        left = world.spool_dir / "vidgen-media-g0-abc"
        left.write_bytes(b"left by a killed process")
        old = time.time() - 7200
        os.utime(left, (old, old))
        assert (await s.sweep_once()).copies == 1
        assert live.exists()
    assert list(world.spool_dir.iterdir()) == []
