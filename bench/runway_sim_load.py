"""Runway simulator under load: do 200 concurrent tasks finish when they are scheduled to?

Starts the simulator in a subprocess, creates N tasks at once through the official SDK with a
fixed schedule (PENDING `queue_s`, then RUNNING `run_s`, no concurrency limit), polls every task
every `poll_s` seconds (staggered), and prints how late each completion was observed relative
to its schedule (server `createdAt` + queue + run), as a percentage of the scheduled duration.
The observed lag includes the polling interval and client-side queueing, so it is an upper
bound. Two cross-checks: the simulator's own timeline (`/_sim/tasks/{id}`, 0 by construction:
state changes are applied at their scheduled instants) and the number of polls *sent* more than
50 ms after a task's scheduled end that still got "not finished" (a late simulator; should be 0).

    uv run python bench/runway_sim_load.py [--tasks 200] [--run-s 14] [--poll-s 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx
from runwayml import AsyncRunwayML, DefaultAsyncHttpxClient

from runway_sim.testing import AsyncSimHandle, async_simulator
from runway_sim.testkit import data_uri, png_bytes


@dataclass
class Sample:
    task_id: str
    scheduled_end: float  # unix time
    observed_end: float  # unix time SUCCEEDED was first seen
    last_unfinished_seen: float  # unix time the last poll answered "not yet" was sent


def _fixed(seconds: float) -> dict[str, Any]:
    return {"median_s": seconds, "sigma": 0, "min_s": 0, "max_s": None}


async def _one_task(
    client: AsyncRunwayML, prompt: str, args: argparse.Namespace, start: asyncio.Event
) -> Sample:
    await start.wait()
    created = await client.image_to_video.create(
        model="gen4_turbo", prompt_image=prompt, ratio="1280:720", duration=5
    )
    first = await client.tasks.retrieve(created.id)
    scheduled_end = first.created_at.timestamp() + args.queue_s + args.run_s
    last_unfinished = time.time()
    await asyncio.sleep(random.uniform(0, args.poll_s))  # stagger the pollers
    while True:
        sent = time.time()
        task = await client.tasks.retrieve(created.id)
        if task.status == "SUCCEEDED":
            return Sample(created.id, scheduled_end, time.time(), last_unfinished)
        if task.status in ("FAILED", "CANCELLED"):
            raise RuntimeError(f"task {created.id} ended {task.status}")
        last_unfinished = sent
        await asyncio.sleep(args.poll_s)


def _pct(values: list[float], scheduled: float) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    cells = [statistics.median(ordered), p95, ordered[-1]]
    return "  ".join(f"{v:7.3f}s ({100 * v / scheduled:5.2f}%)" for v in cells)


async def _server_side_lag(
    sim: AsyncSimHandle, samples: list[Sample], scheduled: float
) -> list[float]:
    lags = []
    for sample in samples:
        timeline = await sim.task_timeline(sample.task_id)
        done_at = next(s["at_s"] for s in timeline["history"] if s["status"] == "SUCCEEDED")
        lags.append(done_at - scheduled)
    return lags


async def main(args: argparse.Namespace) -> None:
    scheduled = args.queue_s + args.run_s
    scenario = {
        "seed": 1,
        "queue": _fixed(args.queue_s),
        "durations": {"gen4_turbo": _fixed(args.run_s)},
        "org": {
            "credit_balance": 10**9,
            "models": {"gen4_turbo": {"max_concurrent": None, "max_daily": None}},
        },
    }
    prompt = data_uri(png_bytes(640, 360))
    limits = httpx.Limits(
        max_connections=args.tasks + 10, max_keepalive_connections=args.tasks + 10
    )
    async with (
        async_simulator(scenario=scenario, mode="process") as sim,
        AsyncRunwayML(
            base_url=sim.base_url,
            api_key=sim.api_key,
            max_retries=0,
            http_client=DefaultAsyncHttpxClient(limits=limits, timeout=30),
        ) as client,
    ):
        start = asyncio.Event()
        jobs = [
            asyncio.create_task(_one_task(client, prompt, args, start)) for _ in range(args.tasks)
        ]
        began = time.monotonic()
        start.set()
        samples = await asyncio.gather(*jobs)
        elapsed = time.monotonic() - began
        counters = await sim.counters()
        server_lags = await _server_side_lag(sim, samples, scheduled)

    observed = [s.observed_end - s.scheduled_end for s in samples]
    late = sum(1 for s in samples if s.last_unfinished_seen > s.scheduled_end + 0.05)
    retrieves = list(counters["retrieves_per_task"].values())
    print(
        f"tasks: {args.tasks} concurrent, scheduled {scheduled:.1f}s each "
        f"(PENDING {args.queue_s}s + RUNNING {args.run_s}s), polled every {args.poll_s}s"
    )
    print(f"wall time: {elapsed:.1f}s; final statuses: {counters['final_statuses']}")
    print(
        f"retrieves per task: mean {statistics.mean(retrieves):.1f}, max {max(retrieves)}; "
        f"request rate ~{sum(retrieves) / elapsed:.0f}/s"
    )
    print("completion lag behind schedule      median              p95                 max")
    print(f"  observed by the poller:   {_pct(observed, scheduled)}")
    print(f"  simulator's own timeline: {_pct(server_lags, scheduled)}")
    print(f"tasks still reported unfinished to a poll sent > 50 ms after their end: {late}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--queue-s", type=float, default=1.0)
    parser.add_argument("--run-s", type=float, default=14.0)
    parser.add_argument("--poll-s", type=float, default=0.5)
    asyncio.run(main(parser.parse_args()))
