"""Slot utilisation: do we keep the organisation's Runway slots full, never over?

The whole system as ``make run`` starts it (``bench/pipeline.py``'s :func:`system`), the
simulator's organisation allowed ``--slots`` concurrent tasks of the model, the generator
reading its budget from ``/v1/organization`` (``VIDGEN_BUDGET_FROM_ORGANIZATION=true``), and a
backlog of ``--count`` generations from ``--users`` users submitted at once. Tasks run a fixed
``--queue-s`` + ``--run-s``.

From the simulator's own task records (``GET /_sim/tasks`` and each ``/_sim/tasks/{id}``
history): a task holds a slot from the moment it left THROTTLED (or was created, if never
throttled) until it finished. Printed:

- the fraction of slot-time busy between the first start and the last end (goal ≥ 97 %),
- the gap between a task ending and the next task starting (p50/p95, goal p95 < 300 ms),
- the count of tasks ever THROTTLED (goal 0), and the load average;
- the estimates' accuracy: the median absolute error of each generation's first
  ``estimatedCompletionAt`` (read from the live stream right after it was accepted) against
  its real ``completedAt``, also as a fraction of its real wait, and how often an update
  moved the completion further away than 1 s (the estimates should only move closer).

    scripts/with-env.sh uv run python bench/slots.py [--slots 5] [--count 100] [--users 10]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import (
    MODEL,
    Gen,
    System,
    VideoReady,
    line,
    loadavg,
    outbox_rows,
    percentile,
    sim_tasks,
    submit_all,
    system,
    wall,
)

REFILL_STAGES = (
    *("detection", "poller", "relay", "kafka", "handler"),
    *("claim", "image", "intent", "create"),
)


def scenario(slots: int, queue_s: float, run_s: float) -> dict[str, Any]:
    fixed = {"sigma": 0, "min_s": 0, "max_s": None}
    return {
        "seed": 15,
        "time_scale": 1.0,
        "queue": {"median_s": queue_s, **fixed},
        "durations": {MODEL: {"median_s": run_s, **fixed}},
        "org": {"models": {MODEL: {"max_concurrent": slots, "max_daily": None}}},
    }


async def intervals(base_url: str, tasks: list[dict[str, Any]]) -> list[tuple[float, float, bool]]:
    """(slot taken, slot freed, ever throttled) of each finished task, wall clock."""
    out: list[tuple[float, float, bool]] = []
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:

        async def one(task: dict[str, Any]) -> None:
            async with limit:
                detail = (await http.get(f"/_sim/tasks/{task['id']}")).json()
            if not task["finished_at"]:
                return
            created = wall(task["created_at"])
            statuses = [h["status"] for h in detail["history"]]
            held = next((h["at_s"] for h in detail["history"] if h["status"] != "THROTTLED"), 0.0)
            out.append((created + held, wall(task["finished_at"]), "THROTTLED" in statuses))

        await asyncio.gather(*(one(t) for t in tasks))
    return out


def utilisation(spans: list[tuple[float, float, bool]], slots: int) -> tuple[float, list[float]]:
    """Busy fraction of ``slots`` between the first start and the last end; refill gaps."""
    first, last = min(s for s, _, _ in spans), max(e for _, e, _ in spans)
    points = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    busy, active, at = 0.0, 0, first
    for t, delta in points:
        busy += min(active, slots) * (t - at)
        active, at = active + delta, t
    fraction = busy / (slots * (last - first)) if last > first else 0.0
    # each end is refilled by the earliest start after it not already used by an earlier end
    starts = sorted(s for s, _, _ in spans)
    ends = sorted(e for _, e, _ in spans)
    gaps, i = [], 0
    for end in ends:
        while i < len(starts) and starts[i] < end:
            i += 1
        if i == len(starts):
            break  # the tail: nothing was left to start
        gaps.append(starts[i] - end)
        i += 1
    return fraction, gaps


async def refills(
    sys_: System, gens: list[Gen], tasks: list[dict[str, Any]]
) -> list[dict[str, float]]:
    """Each refill (a task's end → the next task's start) cut into stages, from the poller's
    outbox (VideoReady: fetchedAt, commit, publish) and the generator's ``timings`` logs."""
    by_prompt = {g.prompt: g.generation_id for g in gens}
    conn = await asyncpg.connect(sys_.database_url)
    try:
        ready = {
            o["data"].generation_id: o
            for o in await outbox_rows(conn, "poller")
            if isinstance(o["data"], VideoReady)
        }
    finally:
        await conn.close()
    freed: dict[str, dict[str, Any]] = {}
    created: dict[str, dict[str, Any]] = {}
    for entry in sys_.log_lines("generator"):
        timings = entry.get("timings")
        if isinstance(timings, dict):
            (freed if "woken" in timings else created)[timings["generation_id"]] = timings
    ends = []
    starts = []
    for t in tasks:
        gid = by_prompt.get(t["prompt_text"])
        if gid is None or not t["finished_at"]:
            continue
        ends.append((wall(t["finished_at"]), gid))
        starts.append((wall(t["created_at"]), gid))
    ends.sort()
    starts.sort()
    out, i = [], 0
    for end, a in ends:
        while i < len(starts) and starts[i][0] < end:
            i += 1
        if i == len(starts):
            break
        start, b = starts[i]
        i += 1
        vr, fr, cr = ready.get(a), freed.get(a), created.get(b)
        if vr is None or fr is None or cr is None or not vr["published"]:
            continue
        fetched = wall(vr["data"].fetched_at)
        out.append(
            {
                "gap": start - end,
                "detection": fetched - end,
                "poller": vr["created"] - fetched,
                "relay": vr["published"] - vr["created"],
                "kafka": fr["ended"] - vr["published"],
                "handler": fr["woken"] - fr["ended"],
                "claim": cr["begun"] - fr["woken"],
                "image": cr["image"] - cr["begun"],
                "intent": cr["intent"] - cr["image"],
                "create": start - cr["intent"],
            }
        )
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_estimates(gens: list[Gen]) -> None:
    """How close the first estimate of completion came, and whether estimates only closed in."""
    errors, relative, later, updates = [], [], 0, 0
    for g in gens:
        if not g.estimates or g.completed_at is None:
            continue
        first = g.estimates[0][1]
        errors.append(abs(first - g.completed_at))
        relative.append(errors[-1] / max(0.001, g.completed_at - g.submitted))
        for (_, a), (_, b) in itertools.pairwise(g.estimates):
            updates += 1
            later += b > a + 1.0
    if not errors:
        print("  estimates   none seen")
        return
    print(
        f"  estimates   first estimate of completion off by p50 {percentile(errors, 0.5):.2f} s "
        f"(p90 {percentile(errors, 0.9):.2f} s), p50 {percentile(relative, 0.5) * 100:.0f} % "
        f"of the real wait, over {len(errors)} generations; {later} of {updates} updates moved "
        "it later by > 1 s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=5)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--queue-s", type=float, default=0.5)
    parser.add_argument("--run-s", type=float, default=3.0)
    parser.add_argument("--gateway-port", type=int, default=18600)
    parser.add_argument("--sim-port", type=int, default=18700)
    parser.add_argument("--keep-logs", default="", help="copy every process's log here")
    args = parser.parse_args()
    extra = {
        "VIDGEN_BUDGET_FROM_ORGANIZATION": "true",
        # the backlog is the point: every user's generations queue at once
        "VIDGEN_MAX_IN_FLIGHT_PER_USER": str(args.count),
        "VIDGEN_DURATION_PRIORS_S": json.dumps({MODEL: args.queue_s + args.run_s}),
    }
    async with system(
        scenario(args.slots, args.queue_s, args.run_s),
        extra,
        gateway_port=args.gateway_port,
        sim_port=args.sim_port,
        keep_logs=Path(args.keep_logs) if args.keep_logs else None,
    ) as sys_:
        load_before = loadavg()
        gens = await submit_all(sys_, args.count, 0.0, args.users, f"{sys_.tag}-slots")
        load_after = loadavg()
        tasks = await sim_tasks(sys_)
        spans = await intervals(sys_.sim, tasks)
        stages = await refills(sys_, gens, tasks)
        async with httpx.AsyncClient(base_url=sys_.sim, timeout=30) as http:
            calls = (await http.get("/_sim/counters")).json()["calls"]
        cpu = {name: cpu_seconds(proc.pid) for name, proc in sys_.procs}
    retrieves = sum(int(n) for n in calls.get("retrieve", {}).values())
    done = sum(1 for g in gens if g.final_status == "completed")
    fraction, gaps = utilisation(spans, args.slots)
    throttled = sum(1 for *_, t in spans if t)
    print(
        f"slots: {args.slots} slots, {args.count} generations from {args.users} users at once, "
        f"tasks {args.queue_s:g} s queue + {args.run_s:g} s running; {done} completed, "
        f"{len(tasks)} Runway tasks; load average {load_before} before, {load_after} after"
    )
    print(f"  busy        {fraction * 100:6.1f} % of slot time   goal: ≥ 97 %")
    if gaps:
        print(
            f"  refill gap  p50 {percentile(gaps, 0.5) * 1000:5.0f} ms  "
            f"p95 {percentile(gaps, 0.95) * 1000:5.0f} ms  max {max(gaps) * 1000:5.0f} ms"
            "   goal: p95 < 300 ms"
        )
    print(f"  throttled   {throttled} tasks   goal: 0")
    print(f"  refills cut into stages ({len(stages)}; claim < 0: claimed before this end):")
    for stage in REFILL_STAGES:
        print("  " + line(stage, [r[stage] for r in stages]))
    print_estimates(gens)
    print("  CPU seconds: " + ", ".join(f"{n} {c:.1f}" for n, c in cpu.items()))
    print(f"  tasks.retrieve calls per task: {retrieves / max(1, len(tasks)):.1f}")


if __name__ == "__main__":
    asyncio.run(main())
