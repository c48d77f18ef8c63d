"""Flat cost at scale: the recurring queries and the idle loops, with 1 k, 10 k and 100 k rows.

For each size it migrates fresh schemas of the gateway, the generator and the poller (with
the common outbox and inbox) and fills them directly with SQL: that many generations,
submissions, tracked tasks, outbox rows and inbox rows, all but 1 k of them finished
(published, handled) long ago, 1 k active (the active ones not due for a day, so the loops
have nothing to do). Then:

- each recurring query, as the services run it (the SQL of their stores), is timed: the
  median of ``--runs`` executions (writes run in a transaction that is rolled back), with the
  plan's access path (``EXPLAIN``) beside it: an index range, not a scan that grows;
- the generator and the poller run as processes (``python -m``) on those schemas, idle, and
  their CPU time per second is measured over ``--idle-s`` seconds.

Goal: every figure flat from 1 k to 100 k (a ratio 100k/1k near 1; a query under 1 ms).

    scripts/with-env.sh uv run python bench/flat_cost.py [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc_cpu import cpu_s  # noqa: E402
from scripts.infra_stack import free_port  # noqa: E402
from vidgen_common.db import asyncpg_dsn  # noqa: E402
from vidgen_common.migrations import COMMON_MIGRATIONS, migrate  # noqa: E402
from vidgen_gateway.migrations import MIGRATIONS as GATEWAY  # noqa: E402
from vidgen_generator.migrations import MIGRATIONS as GENERATOR  # noqa: E402
from vidgen_generator.store import DUE, IN_FLIGHT  # noqa: E402
from vidgen_poller.migrations import MIGRATIONS as POLLER  # noqa: E402

ACTIVE = 1000

FILL = {
    "gateway": [
        # 100 users; the newest ACTIVE are in flight, the rest finished a week ago
        """INSERT INTO projects (id, user_id, image_key, content_type, width, height,
               size_bytes, sha256)
           SELECT 'p' || u, 'user-' || u, 'images/' || u || '.png', 'image/png', 640, 360, 1,
                  'x' FROM generate_series(0, 99) u""",
        """INSERT INTO generations (id, user_id, project_id, status, prompt, model, ratio,
               duration, image_key, image_content_type, created_at, updated_at, completed_at)
           SELECT 'g' || i, 'user-' || (i % 100), 'p' || (i % 100),
                  CASE WHEN i > $1 - $2 THEN 'generating' ELSE 'completed' END, 'p',
                  'gen4_turbo', '1280:720', 5, 'k', 'image/png',
                  now() - make_interval(secs => ($1 - i) * 0.5 + 60),
                  now() - make_interval(secs => ($1 - i) * 0.5),
                  CASE WHEN i > $1 - $2 THEN NULL ELSE now() - interval '7 days' END
           FROM generate_series(1, $1) i""",
    ],
    "generator": [
        """INSERT INTO submissions (generation_id, attempt, user_id, project_id, image_key,
               image_content_type, prompt, model, ratio, duration, state, retry_at,
               runway_task_id, submitted_at, task_ended_at, created_at, updated_at)
           SELECT 'g' || i, 1, 'user-' || (i % 100), 'p', 'k', 'image/png', 'p', 'gen4_turbo',
                  '1280:720', 5,
                  CASE WHEN i > $1 - $2 / 2 THEN 'pending' ELSE 'submitted' END,
                  now() + interval '1 day',
                  CASE WHEN i > $1 - $2 / 2 THEN NULL ELSE 't' || i END,
                  CASE WHEN i > $1 - $2 / 2 THEN NULL
                       ELSE now() - make_interval(secs => ($1 - i) * 0.5) END,
                  CASE WHEN i > $1 - $2 THEN NULL ELSE now() - interval '7 days' END,
                  now() - interval '8 days', now() - interval '7 days'
           FROM generate_series(1, $1) i""",
        "UPDATE submissions SET runway_task_id = NULL, submitted_at = NULL WHERE state = 'pending'",
    ],
    "poller": [
        """INSERT INTO tracked_tasks (runway_task_id, generation_id, user_id, model, duration,
               attempt, submitted_at, state, next_poll_at, deadline_at, finished_at,
               duration_s, status)
           SELECT 't' || i, 'g' || i, 'user-' || (i % 100), 'gen4_turbo', 5, 1,
                  now() - interval '8 days',
                  CASE WHEN i > $1 - $2 THEN 'active' ELSE 'done' END,
                  now() + interval '1 day', now() + interval '2 days',
                  CASE WHEN i > $1 - $2 THEN NULL
                       ELSE now() - make_interval(secs => ($1 - i) * 10.0 + 6 * 86400) END,
                  CASE WHEN i > $1 - $2 THEN NULL ELSE 40 END,
                  CASE WHEN i > $1 - $2 THEN 'RUNNING' ELSE 'SUCCEEDED' END
           FROM generate_series(1, $1) i""",
    ],
}
COMMON = [
    """INSERT INTO outbox (event_id, event_type, topic, key, value, headers, created_at,
           published_at)
       SELECT 'e' || i, 't', 'topic', 'k', 'v', '[]', now() - interval '2 hours',
              CASE WHEN i > $1 - 5 THEN NULL
                   ELSE now() - make_interval(secs => ($1 - i) * 0.5 + 86000) END
       FROM generate_series(1, $1) i""",
    """INSERT INTO inbox (consumer, event_id, event_type, handled_at)
       SELECT 'c', 'e' || i, 't', now() - make_interval(secs => ($1 - i) * 5.0 + 6 * 86400)
       FROM generate_series(1, $1) i""",
]

# (service, what, SQL, args, writes) -- the services' recurring statements
QUERIES: list[tuple[str, str, str, tuple[object, ...], bool]] = [
    (
        "generator",
        "claims: due pending rows, fair order (store.due)",
        "DUE",
        (),
        True,
    ),
    (
        "generator",
        "next due time (store.next_due_at)",
        "SELECT min(retry_at) FROM submissions WHERE state = 'pending'",
        (),
        False,
    ),
    (
        "generator",
        "budget: in flight per model (store.in_flight_by_model)",
        "IN_FLIGHT",
        (),
        False,
    ),
    (
        "poller",
        "due polls (store.claim_due)",
        "SELECT * FROM tracked_tasks WHERE state IN ('active', 'refresh') "
        "AND next_poll_at <= now() ORDER BY next_poll_at LIMIT 32 FOR UPDATE SKIP LOCKED",
        (),
        True,
    ),
    (
        "poller",
        "next due time (store.next_due_at)",
        "SELECT min(next_poll_at) FROM tracked_tasks WHERE state IN ('active', 'refresh')",
        (),
        False,
    ),
    (
        "poller",
        "learned durations (durations.py)",
        "SELECT model, duration_s FROM tracked_tasks WHERE duration_s IS NOT NULL "
        "ORDER BY finished_at DESC LIMIT 100",
        (),
        False,
    ),
    (
        "poller",
        "purge of finished tasks, one batch",
        "DELETE FROM tracked_tasks WHERE ctid = ANY(ARRAY(SELECT ctid "
        "FROM tracked_tasks WHERE state = 'done' AND finished_at < now() - interval '7 days' "
        "ORDER BY finished_at LIMIT 1000))",
        (),
        True,
    ),
    (
        "gateway",
        "list API page (store.generations_page)",
        "SELECT * FROM generations WHERE user_id = 'user-7' "
        "ORDER BY created_at DESC, id DESC LIMIT 21",
        (),
        False,
    ),
    (
        "gateway",
        "list API, 2nd page (cursor)",
        "SELECT * FROM generations WHERE user_id = 'user-7' AND (created_at, id) < "
        "(now() - interval '1 hour', 'g') ORDER BY created_at DESC, id DESC LIMIT 21",
        (),
        False,
    ),
    (
        "gateway",
        "projection update (lock + update by id)",
        "WITH g AS (SELECT id FROM generations WHERE id = 'g5' FOR UPDATE) "
        "UPDATE generations SET progress = 0.5, version = version + 1 "
        "WHERE id IN (SELECT id FROM g)",
        (),
        True,
    ),
    (
        "gateway",
        "generate: in-flight and rate checks",
        "SELECT (SELECT count(*) FROM generations WHERE user_id = 'user-7' AND status IN "
        "('queued', 'generating', 'processing')), (SELECT count(*) FROM generations "
        "WHERE user_id = 'user-7' AND created_at > now() - interval '1 hour')",
        (),
        False,
    ),
    (
        "relay",
        "outbox poll (relay.publish_pending)",
        "SELECT id, topic, key, value, headers FROM outbox WHERE published_at IS NULL "
        "ORDER BY id LIMIT 200",
        (),
        False,
    ),
    (
        "relay",
        "outbox purge, one batch",
        "DELETE FROM outbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM outbox WHERE published_at "
        "< now() - make_interval(secs => 86400) ORDER BY published_at LIMIT 1000))",
        (),
        True,
    ),
    (
        "relay",
        "inbox purge, one batch",
        "DELETE FROM inbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM inbox "
        "WHERE handled_at < now() - make_interval(secs => 604800) "
        "ORDER BY handled_at LIMIT 1000))",
        (),
        True,
    ),
    (
        "common",
        "inbox claim (inbox.claim)",
        "INSERT INTO inbox (consumer, event_id, event_type) VALUES ('c', 'new-event', 't') "
        "ON CONFLICT DO NOTHING RETURNING 1",
        (),
        True,
    ),
]


def _bound(sql: str) -> str:
    """The generator's SQL with its parameters bound as the claim binds them (no weights, no
    full model, 8 free slots: a limit of 32)."""
    values = {
        "now": "now()",
        "since": "now() - interval '1 hour'",
        "limit": "32",
        "excluded": "'{}'",
        "users": "'{}'",
        "weights": "'{}'",
    }
    return re.sub(r"(?<!:):([a-z_]+)", lambda m: values[m[1]], sql)


def in_flight_sql() -> str:
    """The generator's budget query (store.in_flight_by_model)."""
    return _bound(f"SELECT model, count(*) FROM submissions WHERE {IN_FLIGHT} GROUP BY model")  # noqa: S608


def access_path(plan: list[str]) -> str:
    """The scans of a plan, e.g. 'Index Scan using submissions_due'."""
    scans = []
    for line in plan:
        text = line.strip().lstrip("->").strip()
        if "Scan" in text:
            scans.append(text.split("  (")[0])
    return "; ".join(dict.fromkeys(scans))


async def time_query(conn: asyncpg.Connection, sql: str, writes: bool, runs: int) -> float:
    times = []
    for _ in range(runs):
        tr = conn.transaction()
        await tr.start()
        try:
            started = time.perf_counter()
            await conn.fetch(sql)
            times.append((time.perf_counter() - started) * 1000)
        finally:
            await tr.rollback()
    del writes
    return statistics.median(times)


async def idle_cpu(
    schemas: dict[str, str], env: dict[str, str], seconds: float
) -> dict[str, float]:
    sim_port = free_port()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    sim = subprocess.Popen(  # noqa: ASYNC220 (started before measuring)
        [sys.executable, "-m", "runway_sim", "--host", "127.0.0.1", "--port", str(sim_port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for service in ("generator", "poller"):
            procs[service] = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", f"vidgen_{service}"],
                env={
                    **env,
                    "VIDGEN_SERVICE_NAME": schemas[service],
                    "VIDGEN_ROLE": "worker",
                    "VIDGEN_HTTP_PORT": str(free_port()),
                    "RUNWAYML_BASE_URL": f"http://127.0.0.1:{sim_port}",
                    "VIDGEN_LOG_LEVEL": "WARNING",
                },
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        await asyncio.sleep(12)  # start-up, migrations (none left), first passes
        before = {n: cpu_s(p.pid) for n, p in procs.items()}
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        for name, p in procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}")
        return {n: (cpu_s(p.pid) - before[n]) * 1000 / elapsed for n, p in procs.items()}
    finally:
        for p in [*procs.values(), sim]:
            p.terminate()
        for p in [*procs.values(), sim]:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


async def one_size(
    n: int, args: argparse.Namespace, url: str, env: dict[str, str]
) -> dict[str, object]:
    tag = uuid.uuid4().hex[:6]
    schemas = {s: f"bench_flat_{s}_{tag}" for s in ("gateway", "generator", "poller")}
    engine = create_async_engine(url)
    try:
        for service, migrations in (
            ("gateway", GATEWAY),
            ("generator", GENERATOR),
            ("poller", POLLER),
        ):
            await migrate(engine, schemas[service], [*COMMON_MIGRATIONS, *migrations])
    finally:
        await engine.dispose()
    dsn = asyncpg_dsn(url)
    results: dict[str, object] = {}
    try:
        for service, schema in schemas.items():
            conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
            try:
                for sql in [*FILL[service], *COMMON]:
                    await conn.execute(
                        sql, *([n, ACTIVE] if "$2" in sql else [n] if "$1" in sql else [])
                    )
                await conn.execute("VACUUM ANALYZE")
                for svc, what, sql, _, writes in QUERIES:
                    if svc not in (service, "common", "relay") or (
                        svc in ("common", "relay") and service != "gateway"
                    ):
                        continue
                    if sql == "IN_FLIGHT":
                        sql = in_flight_sql()
                    elif sql == "DUE":
                        sql = _bound(DUE)
                    ms = await time_query(conn, sql, writes, args.runs)
                    plan = [r[0] for r in await conn.fetch("EXPLAIN " + sql)]
                    results[f"{svc}: {what}"] = (ms, access_path(plan))
            finally:
                await conn.close()
        cpu = await idle_cpu(schemas, env, args.idle_s)
        for service, ms in cpu.items():
            results[f"{service}: idle CPU ms per s"] = (ms, "")
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            for schema in schemas.values():
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    return results


async def run(args: argparse.Namespace) -> None:
    url = os.environ["DATABASE_URL"]
    env = {
        **os.environ,
        "KAFKA_TOPIC_PREFIX": f"bench-flat-{uuid.uuid4().hex[:6]}.",
        "VIDGEN_ENV": "development",
    }
    sizes = [int(s) for s in args.sizes.split(",")]
    table = {n: await one_size(n, args, url, env) for n in sizes}
    load = [f"{x:.2f}" for x in os.getloadavg()]
    print(
        f"\nflat cost: {', '.join(f'{n:,}' for n in sizes)} rows per table ({ACTIVE:,} active), "
        f"median of {args.runs} runs per query in ms; idle CPU over {args.idle_s:.0f} s; "
        f"{os.cpu_count()} CPUs, load average {' '.join(load)} (shared machine)"
    )
    keys = list(table[sizes[0]])
    width = max(len(k) for k in keys)
    print(f"{'':{width}s} " + " ".join(f"{n:>9,}" for n in sizes) + "   ratio  plan (largest)")
    for k in keys:
        vals = [float(table[n][k][0]) for n in sizes]  # type: ignore[index]
        ratio = vals[-1] / vals[0] if vals[0] > 0 else float("nan")
        plan = str(table[sizes[-1]][k][1])  # type: ignore[index]
        print(f"{k:{width}s} " + " ".join(f"{v:9.2f}" for v in vals) + f"   {ratio:5.1f}x  {plan}")
    print("goal: flat (ratio near 1x from the smallest to the largest size), index paths only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--idle-s", type=float, default=10)
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
