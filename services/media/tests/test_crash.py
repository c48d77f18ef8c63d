"""A real media process killed -9 in the middle of a multipart upload.

The video is stored once the next delivery takes the transfer over (its lease ran out), the
upload the dead process left is aborted, and the stored bytes are the source's.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import struct
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from vidgen_common.bus import KafkaPublisher, ensure_topics
from vidgen_common.events import (
    Envelope,
    GenerationCompleted,
    VideoReady,
    encode,
    topic_for,
)
from vidgen_common.outbox import Record
from vidgen_testing import unique, wait_until

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def padded(mp4: bytes, total: int) -> bytes:
    """``mp4`` followed by a ``free`` box: still a valid MP4, ``total`` bytes long."""
    pad = total - len(mp4)
    return mp4 + struct.pack(">I", pad) + b"free" + os.urandom(pad - 8)


def process_env(settings: Any) -> dict[str, str]:
    k, s3 = settings.kafka, settings.s3
    return {
        **os.environ,
        "VIDGEN_SERVICE_NAME": settings.service_name,
        "VIDGEN_HTTP_PORT": "0",
        "VIDGEN_MAX_VIDEO_BYTES": str(settings.max_video_bytes),
        "VIDGEN_MAX_CONCURRENT_TRANSFERS": "1",
        "VIDGEN_TRANSFER_LEASE_S": str(settings.transfer_lease_s),
        "VIDGEN_SPOOL_DIR": str(settings.spool_dir or ""),
        "KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": k.topic_prefix,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "KAFKA_SESSION_TIMEOUT_MS": str(k.session_timeout_ms),
        "KAFKA_HEARTBEAT_INTERVAL_MS": str(k.heartbeat_interval_ms),
        "KAFKA_PARTITIONS": str(k.partitions),
        "DATABASE_URL": settings.db.database_url,
        "S3_ENDPOINT": s3.endpoint,
        "S3_BUCKET": s3.bucket,
    }


async def test_a_media_process_killed_mid_upload_leaves_no_upload_and_the_video_is_stored(
    make_media_settings, run_media, video_server, sample_mp4, tmp_path
) -> None:
    settings = make_media_settings(max_video_bytes=32 * MiB, transfer_lease_s=2.0)
    gid = unique("gen-")
    body = padded(sample_mp4, 12 * MiB)
    hold = asyncio.Event()  # the source stalls after 7 MiB: part 1 is uploaded by then
    route = video_server.serve(f"/{gid}/0.mp4", body, hold=hold, hold_after=7 * MiB)
    key = f"videos/user-7/{gid}.mp4"
    envelope: Envelope[Any] = Envelope(
        data=VideoReady(
            generation_id=gid,
            user_id="user-7",
            runway_task_id="task-x",
            output_urls=[video_server.url(f"/{gid}/0.mp4")],
            fetched_at=datetime.now(UTC),
            cost_credits=10,
        ),
        source="/test/poller",
    )
    topic = topic_for(envelope.data, settings.kafka.topic_prefix)
    await ensure_topics(settings.kafka, {topic})
    publisher = KafkaPublisher(settings.kafka, client_id="test-poller")
    await publisher.start()
    try:
        record_key, value, headers = encode(envelope)
        await publisher.publish([Record(topic, record_key, value, headers)])
    finally:
        await publisher.stop()

    from vidgen_media.bootstrap import media_storage

    storage = media_storage(settings)
    await storage.ensure_bucket()
    log = (tmp_path / "media.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vidgen_media",
        env=process_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        async def uploading() -> bool:
            if process.returncode is not None:
                raise AssertionError((tmp_path / "media.log").read_text()[-3000:])
            return any(u.key == key for u in await storage.incomplete_uploads("videos/"))

        await wait_until(uploading, within=90, what="the media process to be mid-upload")
        os.kill(process.pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
    assert process.returncode == -signal.SIGKILL
    left = [u for u in await storage.incomplete_uploads("videos/") if u.key == key]
    assert len(left) == 1  # what the kill left behind
    assert await storage.stat(key) is None
    hold.set()

    async with run_media(settings) as media:  # the next replica (a restart)
        [done] = await media.wait_for(gid, GenerationCompleted, within=120)
        assert done.sha256 == hashlib.sha256(body).hexdigest()
        assert await media.storage.get_bytes(key) == body
        assert [u for u in await storage.incomplete_uploads("videos/") if u.key == key] == []
        row = await media.row(gid)
        assert row is not None
        assert (row["state"], row["attempts"]) == ("completed", 2)
    assert len(route.gets) == 2  # the killed download and the new one
