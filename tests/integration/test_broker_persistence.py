"""The local broker keeps topics, records and committed offsets across a restart, by default.

A private stack (its own directory and ports, the default storage engine: whatever
``VIDGEN_KAFKA_STORAGE`` says in the environment is ignored) is started with
scripts/infra.sh; records are produced and committed, the broker is restarted with
``infra.sh restart kafka``, and everything is read back. ``VIDGEN_TEST_KAFKA_STORAGE`` runs the
same tests against another engine (``memory`` or ``s3-direct``: both fail, the first on the
restart, the second on overlapping produces).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from scripts import infra_stack
from vidgen_testing import unique
from vidgen_testing.kafka import committed_offsets, read_from_start

pytestmark = pytest.mark.integration
GROUP_TIMEOUTS: dict[str, Any] = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500}


def _require_tools() -> None:
    if not infra_stack.tools_installed():
        message = "the broker's tools are not installed: run scripts/infra.sh install"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    _require_tools()
    storage = os.environ.get("VIDGEN_TEST_KAFKA_STORAGE") or None
    s = infra_stack.InfraStack.private(tmp_path_factory.mktemp("broker"), storage=storage)
    s.start("kafka")
    try:
        yield s
    finally:
        s.down()


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, values: list[str]) -> dict[str, tuple[int, int]]:
    """Send every value (overlapping sends); (partition, offset) of each acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        metas = await asyncio.gather(
            *(producer.send_and_wait(topic, v.encode(), key=v.encode()) for v in values)
        )
    finally:
        await producer.stop()
    return {v: (m.partition, m.offset) for v, m in zip(values, metas, strict=True)}


async def _consume_and_commit(
    bootstrap: str, topic: str, group: str, wanted: int
) -> tuple[list[str], dict[int, int]]:
    """Read ``wanted`` records in ``group``, committing after every batch: what was read, and
    the last offsets committed per partition."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **GROUP_TIMEOUTS,
    )
    await consumer.start()
    seen: list[str] = []
    committed: dict[int, int] = {}
    try:
        for _ in range(200):  # bounded
            if len(seen) >= wanted:
                break
            batches = await consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            await consumer.commit(offsets)
            for tp, records in batches.items():
                seen.extend(r.value.decode() for r in records)
                committed[tp.partition] = offsets[tp]
    finally:
        await consumer.stop()
    return seen, committed


async def _topics(bootstrap: str) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        with contextlib.suppress(KafkaError):
            await consumer.stop()


async def test_topics_records_and_offsets_survive_a_broker_restart(stack: Any) -> None:
    bootstrap = stack.kafka_bootstrap
    topic, group = unique("persist-"), unique("group-")
    await _create_topic(bootstrap, topic, 3)
    values = [f"r{i}" for i in range(60)]
    acked = await _produce(bootstrap, topic, values)
    seen, committed = await _consume_and_commit(bootstrap, topic, group, len(values))
    assert sorted(seen) == sorted(values)

    await asyncio.to_thread(stack.restart, "kafka")

    assert topic in await _topics(bootstrap)
    stored = await read_from_start(bootstrap, topic, 3)
    assert {value: slot for slot, value in stored.items()} == acked
    assert await committed_offsets(bootstrap, topic, group, 3) == committed

    # The group goes on where it stopped: it gets the records produced after the restart only.
    await _produce(bootstrap, topic, ["after-1", "after-2"])
    resumed, _ = await _consume_and_commit(bootstrap, topic, group, 2)
    assert sorted(resumed) == ["after-1", "after-2"]


async def test_overlapping_produces_to_one_partition_get_distinct_offsets(stack: Any) -> None:
    """tansu takes the next offset from the partition's watermark object with a conditional
    write; without one, overlapping produces were given the same offset and one acknowledged
    batch replaced the other."""
    bootstrap = stack.kafka_bootstrap
    topic = unique("overlap-")
    await _create_topic(bootstrap, topic, 1)
    groups = [[f"p{p}-{i}" for i in range(20)] for p in range(4)]
    acks = await asyncio.gather(*(_produce(bootstrap, topic, g) for g in groups))
    acked = {value: slot for ack in acks for value, slot in ack.items()}
    assert len(set(acked.values())) == len(acked)  # no offset acknowledged twice
    stored = await read_from_start(bootstrap, topic, 1)
    assert {value: slot for slot, value in stored.items()} == acked


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_one_part_of_a_private_stack_stops_and_starts_alone(tmp_path: Path) -> None:
    """What fault injection needs: a whole private stack, then one part at a time."""
    _require_tools()
    s = infra_stack.InfraStack.private(tmp_path / "stack")  # a parent of mode 700: any works
    ports = {"kafka": s.kafka_port, "s3": s.s3_port, "postgres": s.pg_port}
    try:
        s.up()
        assert all(_port_open(p) for p in [*ports.values(), s.store_port])
        for part, port in ports.items():
            s.stop(part)
            assert not _port_open(port)
            assert all(_port_open(p) for q, p in ports.items() if q != part)
            s.start(part)
            assert _port_open(port)
            s.restart(part)
            assert _port_open(port)
        assert "postgres (immediate)" in s.restart("postgres")
        assert s.up().count(" up on ") == 0  # everything already runs: a no-op
    finally:
        s.down()
        shutil.rmtree(s.local_dir, ignore_errors=True)
    assert not any(_port_open(p) for p in [*ports.values(), s.store_port])
