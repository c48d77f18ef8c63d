"""POST /api/videos/generate: throughput and latency, beside a bare one-INSERT endpoint.

Two servers are run in turn, each in its own process on loopback, the same way (one asyncio
loop, uvicorn through ``vidgen_common.runtime.serve_http``, SQLAlchemy/asyncpg with the same
pool size), against the same PostgreSQL:

- **gateway**: ``python -m vidgen_gateway``: the whole service, i.e. the API plus its outbox
  relay (publishing each GenerationRequested to Kafka) and projection consumer, in a schema
  of its own; every request is authenticated (HS256 JWT), validated, checked for ownership,
  idempotency key and per-user limits (set high enough never to trip), and writes the
  generation, the idempotency key and the outbox row in one transaction;
- **bare**: a FastAPI endpoint that parses the same JSON body and does one INSERT (and its
  commit), nothing else: the floor of "an HTTP request that writes a row".

Both servers run from the start; the same client (httpx, ``--concurrency`` requests in flight)
drives them in alternating rounds (``--rounds``, ``--requests`` per server in all, after
``--warmup``), so a change in the machine's load hits both alike; after each gateway round it
waits until the gateway's outbox relay has published every event (the time is printed), so
the bare round does not share the machine with the gateway's backlog. It prints requests/s,
p50 and p99 latency of each, the server process's CPU time per request (the gateway's
includes its relay and consumer catching up), and the ratios. Everything lives under a
unique ``bench_`` name; the schemas are dropped afterwards.

    scripts/with-env.sh uv run python bench/gateway_generate.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from PIL import Image
from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc_cpu import cpu_s, infra_pids, tree_cpu_s  # noqa: E402
from vidgen_common.db import asyncpg_dsn  # noqa: E402
from vidgen_common.settings import DatabaseSettings  # noqa: E402
from vidgen_gateway.auth import mint_dev_token  # noqa: E402
from vidgen_gateway.settings import GatewaySettings  # noqa: E402

SECRET = "bench-secret-0123456789abcdefghijklmnop"  # noqa: S105 (a bench-only key)


@dataclass
class Result:
    name: str
    elapsed_s: float
    latencies_ms: list[float]
    statuses: dict[int, int]
    server_cpu_s: float = 0.0
    db_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def cpu_ms(self) -> float:
        """Server process CPU time per request (user + system)."""
        return self.server_cpu_s * 1000 / len(self.latencies_ms)

    @property
    def db_cpu_ms(self) -> float:
        """PostgreSQL's CPU time per request (the postmaster and every backend)."""
        return self.db_cpu_s * 1000 / len(self.latencies_ms)

    def line(self) -> str:
        return (
            f"{self.name:8s} {self.rps:8.0f} req/s   p50 {self.pct(0.50):6.2f} ms   "
            f"p99 {self.pct(0.99):6.2f} ms   CPU per request: server {self.cpu_ms:5.2f} ms, "
            f"PostgreSQL {self.db_cpu_ms:5.2f} ms   "
            f"statuses {dict(sorted(self.statuses.items()))}"
        )


# ---- the bare server (run in a child process: --serve-bare PORT SCHEMA) ---------------------


class BareBody(BaseModel):
    projectId: str = Field(max_length=64)
    prompt: str = Field(max_length=1000)


def serve_bare(port: int, schema: str) -> None:
    from fastapi import FastAPI

    from vidgen_common.db import create_engine, run_sql, session_factory
    from vidgen_common.runtime import serve_http

    async def main() -> None:
        db = DatabaseSettings()
        engine = create_engine(db, schema)
        sessions = session_factory(engine)
        app = FastAPI()

        @app.post("/insert", status_code=202)
        async def insert(body: BareBody) -> dict[str, str]:
            gid = str(uuid.uuid4())
            async with sessions() as s:
                await run_sql(
                    s,
                    "INSERT INTO rows (id, project_id, prompt) VALUES (:i, :p, :t)",
                    {"i": gid, "p": body.projectId, "t": body.prompt},
                )
                await s.commit()
            return {"generationId": gid, "status": "queued"}

        @app.get("/healthz")
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        stop = asyncio.Event()
        await serve_http(app, "127.0.0.1", port, stop)

    asyncio.run(main())


# ---- the load -------------------------------------------------------------------------------


async def load(
    name: str,
    client: httpx.AsyncClient,
    request: Callable[[int], Awaitable[httpx.Response]],
    total: int,
    concurrency: int,
) -> Result:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            r = await request(i)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, time.perf_counter() - started, latencies, statuses)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_up(url: str, proc: subprocess.Popen[bytes], within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                if (await c.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (640, 360), (20, 90, 160)).save(buf, format="PNG")
    return buf.getvalue()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def drained(dsn: str, schema: str, within: float = 120) -> float:
    """Seconds until the gateway's outbox relay has published everything written."""
    started = time.monotonic()
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        while time.monotonic() - started < within:
            pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            if pending == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise RuntimeError("the gateway did not catch up")


async def run(args: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:8]
    pg = infra_pids()["postgres"]  # the postmaster
    gw_schema, bare_schema = f"bench_gw_{tag}", f"bench_bare_{tag}"
    dsn = asyncpg_dsn(DatabaseSettings().database_url)
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{bare_schema}"')
        await conn.execute(
            f'CREATE TABLE "{bare_schema}".rows (id text PRIMARY KEY, project_id text NOT NULL, '
            "prompt text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
    finally:
        await conn.close()
    gw_port, bare_port = free_port(), free_port()
    env = {
        **os.environ,
        "VIDGEN_ENV": "development",
        "VIDGEN_SERVICE_NAME": gw_schema,
        "VIDGEN_HTTP_PORT": str(gw_port),
        "VIDGEN_JWT_SECRET": SECRET,
        "VIDGEN_MAX_IN_FLIGHT_PER_USER": "100000000",
        "VIDGEN_GENERATE_RATE_LIMIT": "100000000",
        "VIDGEN_LOG_LEVEL": "WARNING",
        "KAFKA_TOPIC_PREFIX": f"bench-{tag}.",
        "S3_BUCKET": f"bench-{tag}",
    }
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 (started once, before the measurement)
            [sys.executable, "-m", "vidgen_gateway"], env=env, cwd=ROOT
        ),
        subprocess.Popen(  # noqa: ASYNC220 (started once, before the measurement)
            [sys.executable, __file__, "--serve-bare", str(bare_port), bare_schema], cwd=ROOT
        ),
    ]
    gw_base, bare_base = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{bare_port}"
    results: dict[str, list[Result]] = {"gateway": [], "bare": []}
    drains: list[float] = []
    try:
        await wait_up(gw_base + "/readyz", procs[0])
        await wait_up(bare_base + "/healthz", procs[1])
        settings = GatewaySettings(jwt_secret=SECRET)
        async with (
            httpx.AsyncClient(base_url=gw_base, limits=limits, timeout=60) as gw,
            httpx.AsyncClient(base_url=bare_base, limits=limits, timeout=60) as bare,
        ):
            users = [f"bench-user-{i}" for i in range(args.users)]
            headers = {u: {"Authorization": f"Bearer {mint_dev_token(settings, u)}"} for u in users}
            image = png()
            projects = {}
            for u in users:
                r = await gw.post(
                    "/api/images/upload",
                    files={"file": ("a.png", image, "image/png")},
                    headers=headers[u],
                )
                r.raise_for_status()
                projects[u] = r.json()["projectId"]

            def generate(i: int) -> Awaitable[httpx.Response]:
                u = users[i % len(users)]
                return gw.post(
                    "/api/videos/generate",
                    json={"projectId": projects[u], "prompt": f"bench shot {i}"},
                    headers={**headers[u], "Idempotency-Key": uuid.uuid4().hex},
                )

            pid = str(uuid.uuid4())

            def insert(i: int) -> Awaitable[httpx.Response]:
                return bare.post("/insert", json={"projectId": pid, "prompt": f"bench shot {i}"})

            await load("warmup", gw, generate, args.warmup, args.concurrency)
            await drained(dsn, gw_schema)
            await load("warmup", bare, insert, args.warmup, args.concurrency)
            # alternate rounds, so a change in the machine's load hits both alike; after each
            # gateway round, wait for its relay to catch up before going on
            per_round = max(1, args.requests // args.rounds)
            for _ in range(args.rounds):
                cpu, db = cpu_s(procs[0].pid), tree_cpu_s(pg)
                result = await load("gateway", gw, generate, per_round, args.concurrency)
                drains.append(await drained(dsn, gw_schema))
                result.server_cpu_s = cpu_s(procs[0].pid) - cpu  # with relay's share
                result.db_cpu_s = tree_cpu_s(pg) - db  # with the drain check's few queries
                results["gateway"].append(result)
                cpu, db = cpu_s(procs[1].pid), tree_cpu_s(pg)
                result = await load("bare", bare, insert, per_round, args.concurrency)
                result.server_cpu_s = cpu_s(procs[1].pid) - cpu
                result.db_cpu_s = tree_cpu_s(pg) - db
                results["bare"].append(result)
    finally:
        for proc in procs:
            stop(proc)
        conn = await asyncpg.connect(dsn)
        try:
            for schema in (gw_schema, bare_schema):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    merged = {name: merge(name, rounds) for name, rounds in results.items()}
    gwr, floor = merged["gateway"], merged["bare"]
    print(
        f"\nPOST /api/videos/generate vs a bare one-INSERT endpoint: {args.rounds} alternating "
        f"rounds of {per_round} requests each, {args.concurrency} in flight, "
        f"{args.users} users, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    for name, rounds in results.items():
        print(f"  {name:8s} per round: " + ", ".join(f"{r.rps:.0f}" for r in rounds) + " req/s")
    print(gwr.line())
    print(floor.line())
    print(
        f"ratio    throughput {gwr.rps / floor.rps:.2f}x of bare   "
        f"p50 {gwr.pct(0.5) / floor.pct(0.5):.2f}x   p99 {gwr.pct(0.99) / floor.pct(0.99):.2f}x"
    )
    print(
        f"gateway outbox relay caught up {statistics.median(drains) * 1000:.0f} ms "
        "(median) after a round's last answer"
    )
    bad = {s: n for r in merged.values() for s, n in r.statuses.items() if s != 202}
    if bad:
        raise SystemExit(f"unexpected statuses: {bad}")


def merge(name: str, rounds: list[Result]) -> Result:
    statuses: dict[int, int] = {}
    for r in rounds:
        for status, n in r.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return Result(
        name,
        sum(r.elapsed_s for r in rounds),
        [ms for r in rounds for ms in r.latencies_ms],
        statuses,
        sum(r.server_cpu_s for r in rounds),
        sum(r.db_cpu_s for r in rounds),
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-bare":
        serve_bare(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    random.seed(0)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
