"""Our poller against the SDK's own ``wait_for_task_output`` loop, on the Runway simulator.

One run, one simulator (its own process), the same duration distribution for both loops:
``--tasks`` tasks are tracked by the real poller service (``ServiceRuntime`` + its scheduler,
PostgreSQL and Kafka from the environment: run through ``scripts/with-env.sh``) and as many
by the SDK's loop (``AsyncNewTaskCreatedResponse.wait_for_task_output``: a poll every
6 s ± 1.5 s). Tasks of both kinds are created, interleaved, at random times over
``--spread-s`` seconds; the bench creates ours itself and publishes their ``TaskSubmitted``,
as the generator would.

Task durations are the simulator's realistic defaults (time in queue: lognormal, median 2 s;
running: lognormal with sigma 0.3, gen4_turbo median 45 s and veo3.1_fast 40 s, clamped), with the
organisation's concurrency and daily caps lifted, so no task is ever THROTTLED. The poller
starts from its priors and learns durations as tasks finish.

It prints, for both loops: ``tasks.retrieve`` calls per task (counted by the simulator), and
the delay between the moment the task finished (the simulator's own timeline) and the moment
we knew: for the SDK loop, when ``wait_for_task_output`` returned; for our poller, when its
``VideoReady`` came out of Kafka (and, for reference, the ``fetchedAt`` inside it: the poll
that saw SUCCEEDED). Target: fewer calls per task than the SDK loop, p95 delay under 1 s.

``--scale`` < 1 shrinks every simulated duration and the SDK loop's interval by the same
factor (stated in the output); the default runs unscaled, in about four minutes.

    scripts/with-env.sh uv run python bench/poller_vs_sdk.py [--tasks 500] [--spread-s 60]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import random
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import runwayml.lib.polling as sdk_polling
from aiokafka import AIOKafkaConsumer, TopicPartition
from runwayml import AsyncRunwayML
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from runway_sim.settings import Settings as SimSettings
from runway_sim.testing import SimHandle, simulator
from runway_sim.testkit import png_bytes
from vidgen_common.bus import KafkaPublisher, ensure_topics
from vidgen_common.events import Envelope, TaskSubmitted, VideoReady, decode, encode, topic_for
from vidgen_common.outbox import Record
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.settings import DatabaseSettings, KafkaSettings
from vidgen_poller.bootstrap import EMITS, bootstrap
from vidgen_poller.migrations import MIGRATIONS
from vidgen_poller.settings import PollerSettings
from vidgen_runway.settings import RunwaySettings

MODELS = (("gen4_turbo", "1280:720", 5, 0.7), ("veo3.1_fast", "1280:720", 4, 0.3))


def scenario(scale: float, seed: int) -> dict[str, Any]:
    unlimited = {"max_concurrent": None, "max_daily": None}
    return {
        "seed": seed,
        "time_scale": scale,
        "org": {"models": {m: unlimited for m, *_ in MODELS}},
    }


def pick_model(rng: random.Random) -> tuple[str, str, int]:
    roll, edge = rng.random(), 0.0
    for model, ratio, duration, share in MODELS:
        edge += share
        if roll < edge:
            return model, ratio, duration
    model, ratio, duration, _ = MODELS[-1]
    return model, ratio, duration


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class Tap:
    """VideoReady events as they come out of Kafka, with their arrival time."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.arrived: dict[str, tuple[float, VideoReady]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def all_arrived(self, count: int) -> None:
        while len(self.arrived) < count:
            self._changed.clear()
            await self._changed.wait()

    async def start(self) -> None:
        topic = topic_for(VideoReady, self.kafka.topic_prefix)
        await ensure_topics(self.kafka, [topic])
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        await self._consumer.start()
        self._consumer.assign([TopicPartition(topic, p) for p in range(self.kafka.partitions)])
        await self._consumer.seek_to_beginning()
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=50)
            now = time.time()
            for records in batch.values():
                for record in records:
                    event = decode(list(record.headers or ()), record.value).data
                    if isinstance(event, VideoReady):
                        self.arrived.setdefault(event.runway_task_id, (now, event))
                        self._changed.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


async def timelines(sim: SimHandle, task_ids: list[str]) -> dict[str, tuple[float, float]]:
    """Wall-clock creation and SUCCEEDED times of each task, from the simulator's timelines."""
    out: dict[str, tuple[float, float]] = {}
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as http:

        async def one(task_id: str) -> None:
            async with limit:
                sent = time.time()
                response = await http.get(f"/_sim/tasks/{task_id}")
                received = time.time()
            timeline = response.raise_for_status().json()
            created = (sent + received) / 2 - timeline["age_s"]
            for step in timeline["history"]:
                if step["status"] == "SUCCEEDED":
                    out[task_id] = (created, created + step["at_s"])

        await asyncio.gather(*(one(t) for t in task_ids))
    return out


async def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)7.0f ms %(message)s")
    # tansu closes fetch connections now and then; aiokafka reconnects and logs each one.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    rng = random.Random(args.seed)
    image = "data:image/png;base64," + base64.b64encode(png_bytes(64, 36)).decode()
    sim_settings = SimSettings(
        render_height=16, render_fps=1, access_log=False, log_level="warning"
    )
    sdk_polling.POLL_TIME = 6 * args.scale  # the SDK loop's interval, scaled like the tasks
    sdk_polling.POLL_JITTER = 3 * args.scale

    kafka = KafkaSettings(topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    db = DatabaseSettings()
    schema = f"bench_poller_{uuid.uuid4().hex[:8]}"
    with simulator(sim_settings, scenario=scenario(args.scale, args.seed), mode="process") as sim:
        settings = PollerSettings(
            database_schema=schema,
            kafka=kafka,
            db=db,
            runway=RunwaySettings(runwayml_api_secret=sim.api_key, runwayml_base_url=sim.base_url),
            duration_priors_s={
                m: p * args.scale for m, p in PollerSettings().duration_priors_s.items()
            },
        )
        rt = ServiceRuntime(settings, MIGRATIONS, emits=EMITS, configure_logs=False)
        await rt.__aenter__()
        poller = bootstrap(rt, settings)
        service = asyncio.create_task(rt.run(install_signals=False))
        tap = Tap(kafka)
        await tap.start()
        publisher = KafkaPublisher(kafka, client_id="bench")
        await publisher.start()
        client = AsyncRunwayML(api_key=sim.api_key, base_url=sim.base_url, max_retries=0)
        ours: list[str] = []
        sdk_done: dict[str, float] = {}
        try:
            plan = sorted((rng.uniform(0, args.spread_s), i) for i in range(2 * args.tasks))
            started = time.monotonic()

            async def launch(at: float, i: int) -> None:
                await asyncio.sleep(max(0.0, at - (time.monotonic() - started)))
                model, ratio, duration = pick_model(rng)
                params = {
                    "model": model,
                    "prompt_image": image,
                    "prompt_text": "bench",
                    "ratio": ratio,
                    "duration": duration,
                }
                created: Any = await client.image_to_video.create(**params)
                if i % 2 == 0:
                    ours.append(created.id)
                    event = TaskSubmitted(
                        generation_id=f"bench-{i}",
                        user_id="bench",
                        runway_task_id=created.id,
                        model=model,
                        duration=duration,
                        submitted_at=datetime.now(UTC),
                    )
                    key, value, headers = encode(Envelope(data=event, source="/bench"))
                    topic = topic_for(TaskSubmitted, kafka.topic_prefix)
                    await publisher.publish([Record(topic, key, value, headers)])
                else:
                    await created.wait_for_task_output(timeout=None)
                    sdk_done[created.id] = time.time()

            print(
                f"{args.tasks} tasks per loop, created over {args.spread_s:.0f} s; "
                f"time scale {args.scale:g}"
                + (" (durations and the SDK's 6 s interval both scaled)" if args.scale != 1 else "")
            )
            await asyncio.gather(*(launch(at, i) for at, i in plan))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tap.all_arrived(len(ours)), 600 * args.scale)
            wall = time.monotonic() - started
            counters = sim.counters()
            times = await timelines(sim, ours + list(sdk_done))
        finally:
            await client.close()
            await publisher.stop()
            await tap.stop()
            rt.stop.set()
            await service
            await poller.close()
            await rt.__aexit__(None, None, None)
            await drop_schema(db, schema)

    report(args, ours, sdk_done, tap, counters, times, wall)


def report(
    args: argparse.Namespace,
    ours: list[str],
    sdk_done: dict[str, float],
    tap: Tap,
    counters: dict[str, Any],
    times: dict[str, tuple[float, float]],
    wall: float,
) -> None:
    calls = counters["retrieves_per_task"]
    missing = [t for t in ours if t not in tap.arrived]
    finished = {t: end for t, (_, end) in times.items()}
    lengths = [end - start for start, end in times.values()]
    rows = []
    ours_calls = [calls.get(t, 0) for t in ours]
    ours_ready = [tap.arrived[t][0] - finished[t] for t in ours if t in tap.arrived]
    ours_seen = [
        tap.arrived[t][1].fetched_at.timestamp() - finished[t] for t in ours if t in tap.arrived
    ]
    sdk_calls = [calls.get(t, 0) for t in sdk_done]
    sdk_delay = [sdk_done[t] - finished[t] for t in sdk_done]
    rows.append(("SDK wait_for_task_output", sdk_calls, sdk_delay))
    rows.append(("vidgen poller (VideoReady on Kafka)", ours_calls, ours_ready))
    rows.append(("vidgen poller (poll that saw it)", ours_calls, ours_seen))
    print(f"run took {wall:.0f} s; {len(ours)} + {len(sdk_done)} tasks finished")
    print(
        f"task durations (created -> SUCCEEDED): p5 {percentile(lengths, 0.05):.1f} s, "
        f"p50 {percentile(lengths, 0.5):.1f} s, p95 {percentile(lengths, 0.95):.1f} s, "
        f"max {max(lengths):.1f} s"
    )
    if missing:
        print(f"WARNING: {len(missing)} of our tasks had no VideoReady in time")
    print(
        f"{'loop':38} {'calls/task mean':>15} {'p50':>5} {'p95':>5}   "
        f"{'delay p50':>9} {'p95':>7} {'max':>7}"
    )
    for name, c, d in rows:
        print(
            f"{name:38} {statistics.fmean(c):15.2f} {percentile(c, 0.5):5.0f} "
            f"{percentile(c, 0.95):5.0f}   {percentile(d, 0.5):8.3f}s {percentile(d, 0.95):6.3f}s "
            f"{max(d):6.3f}s"
        )
    ratio = statistics.fmean(ours_calls) / statistics.fmean(sdk_calls)
    p95 = percentile(ours_ready, 0.95)
    print(
        f"calls per task, ours / SDK: {ratio:.2f}; our p95 delay to VideoReady: {p95:.3f} s "
        "(targets: < 1 and < 1 s) -> " + ("met" if ratio < 1 and p95 < 1 else "NOT met")
    )


async def drop_schema(db: DatabaseSettings, schema: str) -> None:
    engine = create_async_engine(db.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500, help="tasks per loop")
    parser.add_argument("--spread-s", type=float, default=60.0, help="creation window")
    parser.add_argument("--scale", type=float, default=1.0, help="time scale of durations")
    parser.add_argument("--seed", type=int, default=20240611)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
