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
  moved the completion further away than 1 s (the estimates should only move closer), also
  counted only over the updates made once the whole backlog was in.

    scripts/with-env.sh uv run python bench/slots.py [--slots 5] [--count 100] [--users 10]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
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
from proc_cpu import cpu_s

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


async def gateway_learnt(sys_: System) -> tuple[float, float]:
    """Medians of the task times and refills the gateway's queue view learns from (its
    projection's timestamps, the same SQL as :mod:`vidgen_gateway.queue`)."""
    from vidgen_gateway import queue

    conn = await asyncpg.connect(sys_.database_url)
    try:
        await conn.execute("SET search_path TO gateway")
        tasks = await conn.fetch(
            "SELECT EXTRACT(EPOCH FROM task_ended_at - submitted_at)::float8 AS s "
            "FROM generations WHERE model = $1 AND task_ended_at IS NOT NULL",
            MODEL,
        )
        sql = str(queue._REFILLS).replace(":m", "$1").replace(":n", "$2")
        refills = await conn.fetch(sql, MODEL, 10_000)
    finally:
        await conn.close()
    task_s = [float(r["s"]) for r in tasks] or [0.0]
    gap_s = [float(r["gap_s"]) for r in refills] or [0.0]
    return percentile(task_s, 0.5), percentile(gap_s, 0.5)


def print_estimates(gens: list[Gen]) -> None:
    """How close the first estimate of completion came, and whether estimates only closed in.

    Twice: the estimate read right after each generation was accepted (the rest of the
    backlog still arriving: another user's request accepted later goes ahead of this user's
    later ones, so that estimate is too early by construction), and the first one read once
    the whole backlog was in (the model's own error: task times, slots, refills)."""
    done = [g for g in gens if g.estimates and g.completed_at is not None]
    if not done:
        print("  estimates   none seen")
        return
    backlog_in = max(g.submitted for g in gens)
    # an update that moved the completion later by > 1 s, split at the backlog's arrival:
    # before it, another user's later request going ahead is fair share working, not error
    moves = [(t, b > a + 1.0) for g in done for (_, a), (t, b) in itertools.pairwise(g.estimates)]
    later = sum(up for _, up in moves)
    later_after = sum(up for t, up in moves if t >= backlog_in)
    updates, updates_after = len(moves), sum(t >= backlog_in for t, _ in moves)
    bounded = [g for g in done if g.first_p90 is not None]
    covered = sum(1 for g in bounded if g.completed_at <= (g.first_p90 or 0.0))
    print(
        f"  estimates   over {len(done)} generations; {covered} of {len(bounded)} completed by "
        f"their first p90 bound; {later} of {updates} updates moved it later by > 1 s, "
        f"{later_after} of the {updates_after} made once the backlog was in"
    )
    for label, pick in (
        ("when accepted", lambda g: g.estimates[0]),
        ("backlog in", lambda g: next((e for e in g.estimates if e[0] >= backlog_in), None)),
    ):
        signed, relative = [], []
        for g in done:
            chosen = pick(g)
            if chosen is None or g.completed_at is None:
                continue
            signed.append(chosen[1] - g.completed_at)
            relative.append(abs(signed[-1]) / max(0.001, g.completed_at - chosen[0]))
        if not signed:
            continue
        errors = [abs(e) for e in signed]
        print(
            f"    {label:<14} abs error p50 {percentile(errors, 0.5):6.2f} s "
            f"p90 {percentile(errors, 0.9):6.2f} s, p50 {percentile(relative, 0.5) * 100:3.0f} % "
            f"of the time left; signed p50 {percentile(signed, 0.5):+.2f} s (< 0: too early), "
            f"{len(signed)} generations"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=5)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=10, help="generations run first")
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
        # a system that has run before: task times learnt, the slots known to the gateway
        # (the estimates are judged on that; the warm-up's tasks are then forgotten)
        await submit_all(sys_, args.warmup, 0.0, args.users, f"{sys_.tag}-warmup")
        async with httpx.AsyncClient(base_url=sys_.sim, timeout=30) as http:
            reset = await http.post("/_sim/reset", params={"keep_scenario": "true"})
            reset.raise_for_status()
        load_before = loadavg()
        gens = await submit_all(sys_, args.count, 0.0, args.users, f"{sys_.tag}-slots")
        load_after = loadavg()
        tasks = await sim_tasks(sys_)
        spans = await intervals(sys_.sim, tasks)
        stages = await refills(sys_, gens, tasks)
        async with httpx.AsyncClient(base_url=sys_.sim, timeout=30) as http:
            calls = (await http.get("/_sim/counters")).json()["calls"]
        cpu = {name: cpu_s(proc.pid) for name, proc in sys_.procs}
        learnt = await gateway_learnt(sys_)
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
    held = [e - s for s, e, _ in spans]
    print(
        f"  what the estimates rest on: the gateway saw tasks of p50 {learnt[0]:.2f} s (submitted "
        f"to the end seen) and a refill of p50 {learnt[1]:.2f} s (end seen to the next "
        f"submission); at the simulator a slot was held p50 {percentile(held, 0.5):.2f} s, "
        f"a cycle (hold + refill gap) p50 "
        f"{percentile(held, 0.5) + (percentile(gaps, 0.5) if gaps else 0.0):.2f} s"
    )
    print("  CPU seconds: " + ", ".join(f"{n} {c:.1f}" for n, c in cpu.items()))
    print(f"  tasks.retrieve calls per task: {retrieves / max(1, len(tasks)):.1f}")


if __name__ == "__main__":
    asyncio.run(main())
