"""The local broker's storage under load and restarts: what is acknowledged, what comes back.

For each storage engine given (``--storage``; see scripts/infra.sh), a private stack is started
in a temporary directory on free ports (only the broker and its object store), and then:

- ``--producers`` producers, each its own connection, send ``--messages`` records in all to one
  topic of ``--partitions`` partitions, ``--in-flight`` sends at a time each (so produces to one
  partition overlap), retrying a failed send until it is acknowledged. Every acknowledgement's
  (partition, offset) is recorded with the record it stands for;
- ``--consumers`` members of one consumer group read the topic at the same time, committing
  after every batch;
- meanwhile the broker is restarted ``--restarts`` times (``infra.sh restart kafka``);
- after the producers finish, the group keeps reading until it has seen every acknowledged
  record (bounded by ``--drain-s``), commits and stops; the broker is restarted once more and
  the group's committed offsets are read back;
- a fresh reader then reads every partition from offset 0 to its end.

Printed per engine: records acknowledged per second (restarts included), failed sends,
client-side fetch/commit errors (aiokafka's warnings), tansu's logged errors (ParseInt among
them), broker restart times (stop + start + the first produce-and-fetch round trip that works
again), and what came back: acknowledged records lost, acknowledged offsets that hold another
record (two sends given one offset), records the group never delivered, and committed offsets
that moved after the restart. The run exits 1 when any acknowledged record is lost or an offset
moved with ``--strict``.

    uv run python bench/broker_storage.py [--storage s3 s3-direct] [--messages 2000] [--restarts 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from vidgen_testing.kafka import committed_offsets, read_from_start

ROOT = Path(__file__).resolve().parent.parent


sys.path.insert(0, str(ROOT))  # run as a script: make scripts/ importable
from scripts import infra_stack  # noqa: E402

GROUP_TIMEOUTS: dict[str, Any] = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500}


class WarningCounter(logging.Handler):
    """aiokafka's warnings and errors (fetch and commit failures are logged, not raised),
    split into those logged while the broker was restarting (expected) and the others."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.windows: list[tuple[float, float]] = []
        self.restarting_since: float | None = None
        self.seen: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((time.monotonic(), record.getMessage()))

    def counts(self, slack_s: float = 3.0) -> Counter[str]:
        """Counts by kind (fetch, commit, other) and whether inside a restart window."""
        out: Counter[str] = Counter()
        for at, text in self.seen:
            kind = "fetch" if "etch" in text else "commit" if "ommit" in text else "other"
            during = any(a <= at <= b + slack_s for a, b in self.windows) or (
                self.restarting_since is not None and at >= self.restarting_since
            )
            out[f"{kind}:{'restart' if during else 'steady'}"] += 1
        return out

    def steady_samples(self, n: int = 4, slack_s: float = 3.0) -> list[str]:
        return [
            text[:160]
            for at, text in self.seen
            if not any(a <= at <= b + slack_s for a, b in self.windows)
        ][:n]


@dataclass
class Tally:
    acks: int = 0
    acked: dict[tuple[int, int], str] = field(default_factory=dict)
    values: set[str] = field(default_factory=set)
    collisions: int = 0
    send_failures: int = 0
    consumed: set[str] = field(default_factory=set)
    deliveries: int = 0
    commit_failures: int = 0
    committed: dict[int, int] = field(default_factory=dict)
    restart_s: list[float] = field(default_factory=list)


async def produce(
    bootstrap: str, topic: str, name: str, count: int, in_flight: int, tally: Tally
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, request_timeout_ms=5000
    )
    await producer.start()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for seq in range(count):
        queue.put_nowait(seq)

    async def sender() -> None:
        while True:
            try:
                seq = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            value = f"{name}:{seq}"
            while True:
                try:
                    meta = await producer.send_and_wait(topic, value.encode(), key=value.encode())
                except KafkaError:
                    tally.send_failures += 1
                    await asyncio.sleep(0.2)
                    continue
                slot = (meta.partition, meta.offset)
                tally.acks += 1
                tally.values.add(value)
                if slot in tally.acked and tally.acked[slot] != value:
                    tally.collisions += 1
                tally.acked[slot] = value
                break

    try:
        await asyncio.gather(*(sender() for _ in range(in_flight)))
    finally:
        await producer.stop()


async def consume(
    bootstrap: str, topic: str, group: str, tally: Tally, done: asyncio.Event
) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **GROUP_TIMEOUTS,
    )
    await consumer.start()
    try:
        while not done.is_set():
            batches = await consumer.getmany(timeout_ms=300, max_records=200)
            if not batches:
                continue
            for records in batches.values():
                for record in records:
                    tally.deliveries += 1
                    tally.consumed.add(record.value.decode())
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            try:
                await consumer.commit(offsets)
            except KafkaError:
                tally.commit_failures += 1
                continue
            for tp, offset in offsets.items():
                tally.committed[tp.partition] = max(tally.committed.get(tp.partition, 0), offset)
    finally:
        with contextlib.suppress(KafkaError):
            await consumer.stop()


async def round_trip(bootstrap: str, topic: str, deadline: float) -> bool:
    """Produce one record to ``topic`` and fetch it back by offset; retry until ``deadline``."""
    while time.monotonic() < deadline:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=False, request_timeout_ms=2000
        )
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await producer.start()
            meta = await producer.send_and_wait(topic, b"probe")
            await consumer.start()
            tp = TopicPartition(topic, meta.partition)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            got = await consumer.getmany(tp, timeout_ms=2000)
            if any(r.offset == meta.offset for r in got.get(tp, [])):
                return True
        except KafkaError:
            pass
        finally:
            with contextlib.suppress(KafkaError):
                await producer.stop()
            with contextlib.suppress(KafkaError):
                await consumer.stop()
        await asyncio.sleep(0.1)
    return False


async def restart_broker(
    stack: Any, probe_topic: str, tally: Tally, warnings: WarningCounter
) -> None:
    t0 = time.monotonic()
    warnings.restarting_since = t0
    await asyncio.to_thread(stack.restart, "kafka")
    ok = await round_trip(stack.kafka_bootstrap, probe_topic, time.monotonic() + 60)
    t1 = time.monotonic()
    warnings.windows.append((t0, t1))
    warnings.restarting_since = None
    tally.restart_s.append(t1 - t0 if ok else float("inf"))


def count_lines(path: Path, needle: str) -> int:
    if not path.exists():
        return 0
    pattern = re.compile(rb"\x1b\[[0-9;]*m")  # tansu colours its log
    with path.open("rb") as f:
        return sum(1 for line in f if needle.encode() in pattern.sub(b"", line))


async def run_engine(storage: str, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="vidgen-broker-bench-"))
    stack = infra_stack.InfraStack.private(workdir, storage=storage)
    tally = Tally()
    warnings = WarningCounter()
    kafka_log = logging.getLogger("aiokafka")
    kafka_log.setLevel(logging.WARNING)
    kafka_log.propagate = False
    kafka_log.addHandler(warnings)
    try:
        await asyncio.to_thread(stack.start, "kafka")
        bootstrap = stack.kafka_bootstrap
        topic, probe, group = "stress", "probe", f"stress-{uuid.uuid4().hex[:6]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, args.partitions, 1), NewTopic(probe, 1, 1)])
        await admin.close()

        done = asyncio.Event()
        consumers = [
            asyncio.create_task(consume(bootstrap, topic, group, tally, done))
            for _ in range(args.consumers)
        ]
        per = args.messages // args.producers
        t0 = time.monotonic()
        producers = [
            asyncio.create_task(produce(bootstrap, topic, f"p{i}", per, args.in_flight, tally))
            for i in range(args.producers)
        ]
        for _ in range(args.restarts):
            target = tally.acks + args.messages // (args.restarts + 1)
            for _tick in range(int(args.deadline_s / 0.05)):
                if tally.acks >= target or all(p.done() for p in producers):
                    break
                await asyncio.sleep(0.05)
            await restart_broker(stack, probe, tally, warnings)
        await asyncio.gather(*producers)
        produce_s = time.monotonic() - t0

        wanted = tally.values
        for _tick in range(int(args.drain_s / 0.2)):
            if wanted <= tally.consumed:
                break
            await asyncio.sleep(0.2)
        done.set()
        await asyncio.gather(*consumers)
        committed_before = dict(tally.committed)

        await restart_broker(stack, probe, tally, warnings)
        committed_after = await committed_offsets(bootstrap, topic, group, args.partitions)
        t_read = time.monotonic()
        stored = await read_from_start(bootstrap, topic, args.partitions, within_s=60)
        read_s = time.monotonic() - t_read
    finally:
        kafka_log.removeHandler(warnings)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(stack.down)
    tansu_log = stack.log_path("tansu")
    counts = warnings.counts()
    stored_values = set(stored.values())
    result = {
        "storage": storage,
        "acks": tally.acks,
        "msgs_per_s": tally.acks / produce_s if produce_s else 0.0,
        "send_failures": tally.send_failures,
        "fetch_steady": counts["fetch:steady"],
        "fetch_restart": counts["fetch:restart"],
        "commit_steady": counts["commit:steady"] + tally.commit_failures,
        "commit_restart": counts["commit:restart"],
        "other_steady": counts["other:steady"],
        "other_restart": counts["other:restart"],
        "tansu_errors": count_lines(tansu_log, " ERROR "),
        "tansu_parseint": count_lines(tansu_log, "ParseInt"),
        "restart_s": tally.restart_s,
        "lost": len(tally.values - stored_values),
        "shared_offsets": tally.collisions,
        "never_delivered": len(tally.values - tally.consumed),
        "deliveries": tally.deliveries,
        "offsets_moved": sum(1 for p, o in committed_before.items() if committed_after.get(p) != o),
        "read_per_s": len(stored) / read_s if read_s else 0.0,
        "samples": warnings.steady_samples(),
    }
    if args.keep:
        print(f"  (state and logs kept in {workdir})")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def report(r: dict[str, Any]) -> None:
    restarts = ", ".join("failed" if s == float("inf") else f"{s:.2f}" for s in r["restart_s"])
    print(f"== storage {r['storage']}")
    print(
        f"  acknowledged sends           {r['acks']}  ({r['msgs_per_s']:.0f}/s, restarts included)"
    )
    print(f"  failed sends (retried)       {r['send_failures']}")
    print("  client errors                outside restarts / during restarts")
    print(f"    fetch                      {r['fetch_steady']} / {r['fetch_restart']}")
    print(f"    commit                     {r['commit_steady']} / {r['commit_restart']}")
    print(f"    other warnings             {r['other_steady']} / {r['other_restart']}")
    print(f"  tansu ERROR lines            {r['tansu_errors']}  (ParseInt: {r['tansu_parseint']})")
    print(f"  broker restart -> round trip {restarts} s")
    print(f"  acknowledged, then lost      {r['lost']}")
    print(f"  one offset acknowledged twice {r['shared_offsets']}")
    print(f"  never delivered to the group {r['never_delivered']}  (deliveries {r['deliveries']})")
    print(f"  committed offsets moved      {r['offsets_moved']}")
    print(f"  read back from offset 0      {r['read_per_s']:.0f} records/s")
    for s in r["samples"]:
        print(f"    e.g. {s}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--storage", nargs="+", default=["s3"], choices=["s3", "s3-direct", "memory"]
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--drain-s", type=float, default=60)
    parser.add_argument(
        "--deadline-s", type=float, default=300, help="bound on the wait before each restart"
    )
    parser.add_argument("--keep", action="store_true", help="keep the stack's state and logs")
    parser.add_argument("--strict", action="store_true", help="exit 1 on any loss")
    args = parser.parse_args()
    failed = False
    for storage in args.storage:
        r = await run_engine(storage, args)
        report(r)
        failed |= bool(r["lost"] or r["shared_offsets"] or r["offsets_moved"])
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)
    sys.exit(asyncio.run(main()))
