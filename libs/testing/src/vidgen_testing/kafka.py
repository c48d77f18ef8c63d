"""Reading a topic as it stands on the broker, outside any service: for tests and benchmarks
that check what a broker kept (records and committed offsets) across its restarts."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, TopicPartition


async def read_from_start(
    bootstrap: str, topic: str, partitions: int, within_s: float = 20.0
) -> dict[tuple[int, int], str]:
    """Every record of ``topic`` up to its end offsets now, as (partition, offset) -> value;
    stops at ``within_s`` with what it has read."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out: dict[tuple[int, int], str] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                for r in records:
                    out[(tp.partition, r.offset)] = r.value.decode()
    finally:
        await consumer.stop()
    return out


async def committed_offsets(
    bootstrap: str, topic: str, group: str, partitions: int
) -> dict[int, int]:
    """The offsets ``group`` has committed on each partition of ``topic`` (none: absent)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        out = {}
        for p in range(partitions):
            c = await consumer.committed(TopicPartition(topic, p))
            if c is not None:
                out[p] = c
        return out
    finally:
        await consumer.stop()
