"""Dead letters: list what a consumer gave up on, and replay it once the cause is fixed.

    vidgen-dlq list generation.video-ready            # what is in generation.video-ready.dlq
    vidgen-dlq replay generation.video-ready --all    # send every record back to its topic
    vidgen-dlq replay generation.video-ready --at 0:12

Replay publishes the original key, value and headers (without the ``dlq_*`` ones) to the
record's original topic. The failed handler never committed its effect, so its inbox has no
entry and the replayed event is handled; consumers that had already handled the event (other
groups) skip it as a duplicate. The DLQ itself is left as is (an audit trail).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from vidgen_common.bus.producer import KafkaPublisher
from vidgen_common.events.envelope import dlq_topic
from vidgen_common.outbox import Record
from vidgen_common.settings import KafkaSettings


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str:
        return next((v.decode(errors="replace") for k, v in self.headers if k == name), "")

    @property
    def original_topic(self) -> str:
        return self.header("dlq_original_topic")

    def to_record(self) -> Record:
        kept = [(k, v) for k, v in self.headers if not k.startswith("dlq_")]
        return Record(self.original_topic, self.key, self.value, kept)


async def read_dead_letters(settings: KafkaSettings, topic: str) -> list[DeadLetter]:
    """Every record now in ``<prefix><topic>.dlq`` (read without joining a group)."""
    name = dlq_topic(settings.topic_prefix + topic)
    consumer = AIOKafkaConsumer(**settings.client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fetches metadata, so the partitions below are known
        tps = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[DeadLetter] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out += [
                    DeadLetter(r.partition, r.offset, r.key or b"", r.value or b"", list(r.headers))
                    for r in records
                    if r.offset < ends[TopicPartition(name, r.partition)]
                ]
        return sorted(out, key=lambda d: (d.partition, d.offset))
    finally:
        await consumer.stop()


async def replay(settings: KafkaSettings, letters: Iterable[DeadLetter]) -> int:
    """Publish ``letters`` back to their original topics; returns how many."""
    records = [d.to_record() for d in letters]
    if not records:
        return 0
    publisher = KafkaPublisher(settings, client_id="vidgen-dlq")
    await publisher.start()
    try:
        await publisher.publish(records)
    finally:
        await publisher.stop()
    return len(records)


def _print(letters: list[DeadLetter]) -> None:
    if not letters:
        print("no dead letters")
    for d in letters:
        print(
            f"{d.partition}:{d.offset}  {d.header('ce_type') or '(not a CloudEvent)'}  "
            f"key={d.key.decode(errors='replace')}  id={d.header('ce_id')}  "
            f"attempts={d.header('dlq_attempts')}  group={d.header('dlq_consumer_group')}  "
            f"at={d.header('dlq_failed_at')}\n    reason: {d.header('dlq_reason')}"
        )


async def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vidgen-dlq", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="show the dead letters of a topic")
    ls.add_argument("topic", help="the original topic, e.g. generation.video-ready")
    rp = sub.add_parser("replay", help="publish dead letters back to their topic")
    rp.add_argument("topic")
    which = rp.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dead letter of the topic")
    which.add_argument("--at", action="append", metavar="PARTITION:OFFSET", help="one record")
    args = parser.parse_args(argv)
    settings = KafkaSettings()
    letters = await read_dead_letters(settings, args.topic)
    if args.command == "list":
        _print(letters)
        return 0
    if not args.all:
        wanted = {tuple(int(x) for x in at.split(":", 1)) for at in args.at}
        letters = [d for d in letters if (d.partition, d.offset) in wanted]
        if len(letters) != len(wanted):
            print("some PARTITION:OFFSET were not found in the DLQ", file=sys.stderr)
            return 1
    print(f"replayed {await replay(settings, letters)} record(s)")
    return 0


def main() -> None:
    """Entry point of the ``vidgen-dlq`` command."""
    sys.exit(asyncio.run(_main(sys.argv[1:])))
