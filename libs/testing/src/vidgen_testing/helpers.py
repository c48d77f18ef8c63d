"""Helpers of vidgen's tests: unique names, waiting on a condition, an in-memory record sink."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from vidgen_common.outbox import Ack, Record


def unique(prefix: str) -> str:
    """A short unique name for topics, schemas, buckets and ids."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def wait_until(
    condition: Callable[[], Any], within: float = 20.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``condition`` (sync or async) until it returns a truthy value, or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or condition}")
        await asyncio.sleep(interval)


class MemorySink:
    """A RecordSink keeping records in memory; can fail after publishing, like a crash.

    Like a one-partition-per-topic broker it acknowledges each record with the next offset
    of its topic."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.fail_after_publish = 0
        self._ends: dict[str, int] = {}

    async def publish(self, records: Sequence[Record]) -> list[Ack]:
        self.records.extend(records)
        acks = []
        for r in records:
            offset = self._ends.get(r.topic, 0)
            self._ends[r.topic] = offset + 1
            acks.append(Ack(r.topic, 0, offset))
        if self.fail_after_publish:
            self.fail_after_publish -= 1
            raise ConnectionError("crash between publish and mark")
        return acks
