"""What the judge reads, from sources the services do not control.

- the broker: every record of every topic, read from offset 0 by our own consumer (manual
  assignment of every partition, no consumer group: the services' offsets are untouched);
- the Runway simulator: its task ledger (``GET /_sim/tasks``) and counters, and each task's
  output bytes fetched through Runway's own API;
- the object store: the stored video (downloaded through the status API's presigned URL, as
  a user would) and the bucket's unfinished multipart uploads (``ListMultipartUploads``).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from minio import Minio

from vidgen_chaos.webhooks import WebhookEvidence

SIM_KEY = "key_simulator_dev_only_0000000000000000"  # the simulator's development key
RUNWAY_HEADERS = {"Authorization": f"Bearer {SIM_KEY}", "X-Runway-Version": "2024-11-06"}


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str
    headers: dict[str, str]
    data: dict[str, Any]

    @property
    def ce_id(self) -> str:
        return self.headers.get("ce_id", "")


@dataclass
class Evidence:
    records: dict[str, list[Record]] = field(default_factory=dict)  # topic → records
    sim_tasks: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)
    videos: dict[str, list[str]] = field(default_factory=dict)  # gid → problems ([] = fine)
    multipart: list[str] | None = None  # keys of unfinished uploads; None if not checked
    multipart_error: str | None = None
    not_ready: list[str] = field(default_factory=list)  # processes not ready at the end
    broker_errors: int = 0  # ERROR lines in the broker's own log
    broker_anomalies: list[str] = field(default_factory=list)  # see anomalies()
    webhooks: WebhookEvidence | None = None  # what the suite's webhook receiver saw

    def of(self, topic: str) -> list[Record]:
        return self.records.get(topic, [])


Span = tuple[int, int]  # a partition's first offset and end offset


def anomalies(records: dict[str, list[Record]], spans: dict[tuple[str, int], Span]) -> list[str]:
    """What a broker that kept every record would never show (nothing here deletes, compacts
    or expires records, and no producer is transactional, so offsets are contiguous from 0):
    an offset holding two records, a log that no longer starts at 0, offsets with no record."""
    found = []
    seen: dict[tuple[str, int], dict[int, int]] = {}
    for topic, rs in sorted(records.items()):
        for r in rs:
            offsets = seen.setdefault((topic, r.partition), {})
            offsets[r.offset] = offsets.get(r.offset, 0) + 1
        reused = sum(1 for (t, _), o in seen.items() if t == topic for n in o.values() if n > 1)
        if reused:
            found.append(f"{topic}: {reused} offsets hold 2+ different records")
    for (topic, partition), (start, end) in sorted(spans.items()):
        if start > 0:
            found.append(f"{topic}[{partition}] starts at offset {start}")
        holes = (end - start) - len(seen.get((topic, partition), {}))
        if holes > 0:
            found.append(f"{topic}[{partition}]: {holes} offsets below {end} hold no record")
    return found


async def read_topics(
    bootstrap: str, within_s: float = 90
) -> tuple[dict[str, list[Record]], dict[tuple[str, int], Span]]:
    """Every record of every topic (up to the end offsets seen at the start of the read), and
    each partition's first and end offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=20000
    )
    await consumer.start()
    out: dict[str, list[Record]] = {}
    try:
        topics = sorted(await consumer.topics())
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        if not tps:
            return out, {}
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        begin = await consumer.beginning_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        left = {tp for tp in tps if end[tp] > 0}
        while left:
            if loop.time() > deadline:
                raise TimeoutError(
                    f"broker read incomplete after {within_s} s: {sorted(map(str, left))}"
                )
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    out.setdefault(tp.topic, []).append(_record(r))
                    if r.offset + 1 >= end[tp]:
                        left.discard(tp)
    finally:
        await consumer.stop()
    return out, {(tp.topic, tp.partition): (begin[tp], end[tp]) for tp in tps}


def _record(r: Any) -> Record:
    headers = {k: v.decode(errors="replace") for k, v in (r.headers or ())}
    try:
        data = json.loads(r.value) if r.value else {}
    except ValueError:
        data = {"_undecodable": True}
    key = r.key.decode(errors="replace") if r.key else ""
    return Record(
        r.topic, r.partition, r.offset, key, headers, data if isinstance(data, dict) else {}
    )


async def sim_state(sim_url: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    async with httpx.AsyncClient(base_url=sim_url, timeout=30) as client:
        tasks = (await client.get("/_sim/tasks")).raise_for_status().json()
        counters = (await client.get("/_sim/counters")).raise_for_status().json()
    return tasks, counters


async def runway_output(client: httpx.AsyncClient, task_id: str) -> bytes | None:
    """The task's output as Runway serves it today (None if Runway no longer has it)."""
    task = await client.get(f"/v1/tasks/{task_id}", headers=RUNWAY_HEADERS)
    if task.status_code != 200 or not task.json().get("output"):
        return None
    body = await client.get(task.json()["output"][0])
    return body.content if body.status_code == 200 else None


def mp4_problem(data: bytes) -> str | None:
    """None if PyAV decodes an H.264 video with frames and a duration from ``data``."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
            codec = stream.codec_context.name
            duration = (container.duration or 0) / av.time_base
    except Exception as exc:
        return f"not a readable MP4: {exc!r}"[:200]
    if codec != "h264" or frames == 0 or duration <= 0:
        return f"odd video: codec {codec}, {frames} frames, {duration:.2f} s"
    return None


async def check_video(
    gateway: httpx.AsyncClient,
    sim: httpx.AsyncClient,
    view: dict[str, Any],
    completion: dict[str, Any] | None,
    task_id: str | None,
) -> list[str]:
    """What is wrong with a completed generation's stored video ([] when nothing)."""
    problems: list[str] = []
    url = view.get("videoUrl")
    if not url:
        return ["completed without a videoUrl"]
    stored = None
    for _ in range(3):
        try:
            got = await gateway.get(url)
        except httpx.TransportError:
            continue
        if got.status_code == 200:
            stored = got.content
            break
    if stored is None:
        return ["the stored video does not download"]
    digest = hashlib.sha256(stored).hexdigest()
    if completion is None:
        problems.append("no GenerationCompleted on the broker to compare with")
    elif completion.get("sha256") != digest or completion.get("sizeBytes") != len(stored):
        problems.append("stored bytes differ from GenerationCompleted's sha256/size")
    if (problem := await asyncio.to_thread(mp4_problem, stored)) is not None:
        problems.append(problem)
    if task_id is not None:
        original = await runway_output(sim, task_id)
        if original is not None and hashlib.sha256(original).hexdigest() != digest:
            problems.append(f"stored bytes differ from Runway task {task_id}'s output")
    return problems


def unfinished_uploads(endpoint: str, access: str, secret: str, bucket: str) -> list[str]:
    """Keys of the bucket's multipart uploads never completed nor aborted."""
    host = endpoint.split("://", 1)[1]
    client = Minio(host, access_key=access, secret_key=secret, secure=endpoint.startswith("https"))
    result = client._list_multipart_uploads(bucket)  # no public call for ListMultipartUploads
    return [str(u.object_name) for u in result.uploads]
