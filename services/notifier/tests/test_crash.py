"""A real notifier process (``python -m vidgen_notifier``) killed -9 in the middle of a
delivery: nothing is lost, and the message is sent again under the same ``webhook-id``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict
from typing import Any

import pytest

from vidgen_common.bus import KafkaPublisher
from vidgen_common.events import Envelope, encode, topic_for
from vidgen_common.outbox import Record
from vidgen_notifier.settings import NotifierSettings
from vidgen_testing import unique, wait_until

pytestmark = pytest.mark.integration


def process_env(settings: NotifierSettings) -> dict[str, str]:
    k = settings.kafka
    return {
        **os.environ,
        "VIDGEN_SERVICE_NAME": settings.service_name,
        "VIDGEN_HTTP_PORT": "0",
        "VIDGEN_WEBHOOK_ALLOWED_TARGETS": settings.webhook_allowed_targets,
        "VIDGEN_WEBHOOK_SCHEDULE_SCALE": str(settings.webhook_schedule_scale),
        "VIDGEN_WEBHOOK_TIMEOUT_S": str(settings.webhook_timeout_s),
        "VIDGEN_WEBHOOK_LEASE_S": str(settings.webhook_lease_s),
        "VIDGEN_WEBHOOK_IDLE_S": str(settings.webhook_idle_s),
        "KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": k.topic_prefix,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "KAFKA_SESSION_TIMEOUT_MS": str(k.session_timeout_ms),
        "KAFKA_HEARTBEAT_INTERVAL_MS": str(k.heartbeat_interval_ms),
        "KAFKA_PARTITIONS": str(k.partitions),
        "DATABASE_URL": settings.db.database_url,
        "S3_ENDPOINT": settings.s3.endpoint,
        "S3_BUCKET": settings.s3.bucket,
    }


async def test_a_notifier_killed_mid_delivery_loses_nothing_and_sends_no_second_id(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any, tmp_path: Any
) -> None:
    settings = make_settings(webhook_timeout_s=5.0, webhook_lease_s=6.0)
    user = unique("u-")
    gids = [unique("g-") for _ in range(3)]
    async with run_notifier(settings, drop=False) as n:  # registers, then stops
        ep = await n.register(user, receiver.url())
    hold = asyncio.Event()
    receiver.then(hold=hold)  # the first request hangs until the process is dead

    log = (tmp_path / "notifier.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vidgen_notifier",
        env=process_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        publisher = KafkaPublisher(settings.kafka, client_id="test-producer")
        await publisher.start()
        try:
            for gid in gids:
                for data in (events.requested(gid, user), events.completed(gid, user)):
                    key, value, headers = encode(Envelope(data=data, source="/test"))
                    topic = topic_for(data, settings.kafka.topic_prefix)
                    await publisher.publish([Record(topic, key, value, headers)])
        finally:
            await publisher.stop()

        async def mid_delivery() -> bool:
            if process.returncode is not None:
                raise AssertionError((tmp_path / "notifier.log").read_text()[-3000:])
            return receiver.seen.is_set() and bool(receiver.requests)

        await wait_until(mid_delivery, within=90, what="the notifier to be mid-delivery")
        os.kill(process.pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
    assert process.returncode == -signal.SIGKILL
    hold.set()  # the receiver got the killed attempt's request: it processes it

    async with run_notifier(settings) as n:  # the next replica (a restart)
        for gid in gids:
            [row] = await n.settled(gid, 1, within=60)
            assert row["status"] == "delivered"
        by_generation: dict[str, set[str]] = defaultdict(set)
        for r in receiver.requests:
            by_generation[r.json()["data"]["generationId"]].add(r.webhook_id)
        assert set(by_generation) == set(gids)  # nothing lost
        assert all(len(ids) == 1 for ids in by_generation.values())  # no second id
        assert len(receiver.requests) > len(gids)  # the interrupted one was sent again
        log_entries = await n.log(user, ep["id"])
        errors = [a["error"] for e in log_entries for a in e["attempts"] if a["error"]]
        assert any(e.startswith("interrupted") for e in errors)
