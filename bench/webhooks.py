"""Webhook delivery: deliveries/s and the delay from GenerationCompleted to the receiver's 2xx.

Runs, each as its own process on loopback, against the PostgreSQL and Kafka of the
environment (``make infra-up``; ``scripts/with-env.sh``):

- the notifier (``python -m vidgen_notifier``) in a schema and under a topic prefix of its
  own, ``127.0.0.1`` admitted as a webhook target;
- a fast receiver (this file with ``--serve-receiver``: asyncio, HTTP/1.1 keep-alive, answers
  ``204`` at once and writes each request's arrival time and generation id).

It registers ``--endpoints`` endpoints (1000; one user each) through the notifier's API,
publishes a ``GenerationRequested`` for every generation the run will complete, waits until
the notifier has seen them all, then:

1. **paced**: ``--paced`` completions at ``--rate`` per second, each published alone; the
   delay of each is from the broker's acknowledgement of its ``GenerationCompleted`` (the
   earliest moment the event is committed on Kafka, where the outbox relay of media puts it)
   to the receiver's arrival time of its webhook (the 2xx follows at once). Goal: p95 < 200 ms.
2. **burst**: ``--burst`` completions published at once; deliveries/s is how many the
   receiver got over the time from the first acknowledgement to the last arrival.

It prints both with the machine's load average, the broker's storage (a local stack's
``VIDGEN_LOCAL_KAFKA_STORAGE``) and the notifier's fetch bound (``--fetch-max-wait-ms``, 50 ms
as ``make run`` gives it: tansu answers a fetch only when its bound has passed, so the bound
is added to the hop). The schema and the topics are dropped afterwards.

Against the stack's default broker storage (tansu on S3) the delay varies from run to run
and grows within a run; ``VIDGEN_LOCAL_DIR=... VIDGEN_KAFKA_STORAGE=memory`` with other
ports (``scripts/infra.sh``) gives a stack whose broker keeps records in memory, to tell the
notifier's part from the broker's (``VIDGEN_ENV_FILE=<dir>/infra.env``).

    scripts/with-env.sh uv run python bench/webhooks.py [--endpoints 1000 --paced 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from vidgen_common.bus import KafkaPublisher, ensure_topics
from vidgen_common.db import asyncpg_dsn
from vidgen_common.devtokens import DevTokenSettings, mint_dev_token
from vidgen_common.events import (
    Envelope,
    encode,
    topic_for,
)
from vidgen_common.outbox import Record
from vidgen_common.settings import DatabaseSettings, KafkaSettings
from vidgen_testing import topics
from vidgen_testing.samples import completed, requested

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make scripts/ and bench/ importable
from bench.proc_cpu import cpu_s  # noqa: E402
from scripts.run import NOTIFIER_FETCH_MAX_WAIT_MS  # noqa: E402

GOAL_P95_MS = 200.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the receiver (a child process: --serve-receiver PORT OUT) ------------------------------


def serve_receiver(port: int, out_path: str) -> None:
    out = Path(out_path).open("a", buffering=1)  # noqa: SIM115 (open for the process's life)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                arrived = time.time()
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                gid = json.loads(body).get("data", {}).get("generationId", "")
                out.write(f"{gid} {arrived:.6f}\n")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()
        out.flush()
        os._exit(0)  # keep-alive connections need no goodbye

    asyncio.run(main())


def arrivals(path: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in path.read_text().splitlines():
        gid, _, at = line.partition(" ")
        if gid and gid not in found:
            found[gid] = float(at)
    return found


# ---- events -----------------------------------------------------------------------------------


def record(data: Any, prefix: str) -> Record:
    env: Envelope[Any] = Envelope(data=data, source="/bench")
    key, value, headers = encode(env)
    return Record(topic_for(env.data, prefix), key, value, headers)


# ---- the run ----------------------------------------------------------------------------------


def spawn(
    argv: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    if log is None:
        return subprocess.Popen(argv, env=env)
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def wait_for(what: str, check: Any, within: float, every: float = 0.2) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(every)


async def bench(args: argparse.Namespace) -> None:
    run_id = uuid.uuid4().hex[:8]
    schema, prefix = f"bench_wh_{run_id}", f"benchwh{run_id}."
    kafka = KafkaSettings(topic_prefix=prefix, session_timeout_ms=3000, heartbeat_interval_ms=500)
    db = DatabaseSettings()
    rport, nport = free_port(), free_port()
    arrivals_file = ROOT / ".local" / f"bench-webhooks-{run_id}.txt"
    arrivals_file.parent.mkdir(exist_ok=True)
    arrivals_file.write_text("")
    env = {
        **os.environ,
        "VIDGEN_ENV": "development",
        "VIDGEN_DATABASE_SCHEMA": schema,
        "KAFKA_TOPIC_PREFIX": prefix,
        "KAFKA_SESSION_TIMEOUT_MS": "3000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "VIDGEN_HTTP_PORT": str(nport),
        "VIDGEN_ROLE": "worker",
        "VIDGEN_LOG_LEVEL": "WARNING",
        "VIDGEN_WEBHOOK_ALLOWED_TARGETS": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
        "KAFKA_FETCH_MAX_WAIT_MS": str(args.fetch_max_wait_ms),
    }
    from vidgen_notifier.projection import CONSUMED

    await ensure_topics(kafka, {topic_for(m, prefix) for m in CONSUMED})
    receiver = spawn([sys.executable, __file__, "--serve-receiver", str(rport), str(arrivals_file)])
    log_path = ROOT / ".local" / f"bench-webhooks-{run_id}.log"
    notifier = spawn([sys.executable, "-m", "vidgen_notifier"], env, log_path)
    publisher = KafkaPublisher(kafka, client_id="bench-webhooks")
    conn = await asyncpg.connect(asyncpg_dsn(db.database_url))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{nport}", timeout=30) as api:

            async def ready() -> bool:
                try:
                    return (await api.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for("the notifier", ready, 120)
            users = [f"bench-u{i:04d}" for i in range(args.endpoints)]
            t0 = time.monotonic()
            sem = asyncio.Semaphore(16)

            async def register(i: int, user: str) -> None:
                token = mint_dev_token(DevTokenSettings(), user)
                body = {
                    "url": f"http://127.0.0.1:{rport}/u/{i}",
                    "events": ["generation.completed"],
                }
                headers = {"Authorization": f"Bearer {token}"}
                async with sem:
                    for attempt in range(5):  # a keep-alive connection closed under us
                        try:
                            r = await api.post("/api/webhooks", json=body, headers=headers)
                            break
                        except httpx.TransportError:
                            if attempt == 4:
                                raise
                            await asyncio.sleep(0.5)
                r.raise_for_status()

            await asyncio.gather(*(register(i, u) for i, u in enumerate(users)))
            print(f"registered {len(users)} endpoints in {time.monotonic() - t0:.1f} s", flush=True)

        total = args.paced + args.burst
        gens = [(f"g-{run_id}-{n:05d}", users[n % len(users)]) for n in range(total)]
        await publisher.start()
        t_requests = time.monotonic()
        cpu_requests = cpu_s(notifier.pid)
        for i in range(0, total, 200):
            await publisher.publish([record(requested(g, u), prefix) for g, u in gens[i : i + 200]])

        async def seen() -> bool:
            n = await conn.fetchval(f'SELECT count(*) FROM "{schema}".watched_generations')  # noqa: S608
            return bool(n >= total)

        await wait_for("the notifier to see every request", seen, 300)
        consumed_s = time.monotonic() - t_requests
        cpu_requests = cpu_s(notifier.pid) - cpu_requests

        committed: dict[str, float] = {}
        sent: dict[str, float] = {}

        async def one(g: str, u: str) -> None:
            sent[g] = time.time()
            await publisher.publish([record(completed(g, u), prefix)])
            committed[g] = time.time()

        # 1. paced
        paced = gens[: args.paced]
        start = time.monotonic()
        cpu_paced = cpu_s(notifier.pid)
        tasks = []
        for n, (g, u) in enumerate(paced):
            await asyncio.sleep(max(0.0, start + n / args.rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(g, u)))
        await asyncio.gather(*tasks)

        async def got(ids: list[str]) -> bool:
            found = arrivals(arrivals_file)
            return all(g in found for g in ids)

        await wait_for("the paced webhooks", lambda: got([g for g, _ in paced]), 120)
        cpu_paced = cpu_s(notifier.pid) - cpu_paced
        found = arrivals(arrivals_file)
        delays = [(found[g] - committed[g]) * 1000 for g, _ in paced]
        from_send = [(found[g] - sent[g]) * 1000 for g, _ in paced]
        # where the time goes: the delivery row written (the event handled), its first attempt
        rows = await conn.fetch(
            "SELECT d.generation_id, d.created_at, min(a.at) AS first_at "  # noqa: S608
            f'FROM "{schema}".deliveries d JOIN "{schema}".delivery_attempts a '
            "ON a.delivery_id = d.id "
            "WHERE d.generation_id = ANY($1) GROUP BY d.generation_id, d.created_at",
            [g for g, _ in paced],
        )
        stages: dict[str, list[float]] = {"handled": [], "claimed": [], "sent": []}
        for r in rows:
            g, written, first_at = r["generation_id"], r["created_at"], r["first_at"]
            stages["handled"].append((written.timestamp() - sent[g]) * 1000)
            stages["claimed"].append((first_at - written).total_seconds() * 1000)
            stages["sent"].append((found[g] - first_at.timestamp()) * 1000)

        # 2. burst
        burst = gens[args.paced :]
        first = time.time()
        for i in range(0, len(burst), 100):
            batch = burst[i : i + 100]
            await publisher.publish([record(completed(g, u), prefix) for g, u in batch])
            now = time.time()
            for g, _ in batch:
                committed[g] = now
        await wait_for("the burst's webhooks", lambda: got([g for g, _ in burst]), 300)
        found = arrivals(arrivals_file)
        last = max(found[g] for g, _ in burst)
        rate = len(burst) / (last - first)
        burst_delays = [(found[g] - committed[g]) * 1000 for g, _ in burst]
    finally:
        await publisher.stop()
        for proc in (notifier, receiver):
            proc.send_signal(signal.SIGTERM)
        for proc in (notifier, receiver):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
        await topics.delete_topics(kafka.bootstrap_servers, lambda t: t.startswith(prefix))
        arrivals_file.unlink(missing_ok=True)

    load = loadavg()
    p95 = pct(delays, 0.95)
    verdict = "met" if p95 < GOAL_P95_MS else "NOT met"
    print(f"webhooks: {args.endpoints} endpoints registered, load average {' '.join(load)}")
    print(
        f"  broker {kafka.bootstrap_servers} (storage: "
        f"{os.environ.get('VIDGEN_LOCAL_KAFKA_STORAGE', 'not a local stack')}), the notifier's "
        f"fetch bound {args.fetch_max_wait_ms} ms"
    )
    print(
        f"  the notifier consumed {total} GenerationRequested in {consumed_s:.1f} s "
        f"({total / consumed_s:.0f} events/s: its consumer's pace, which bounds the rest), "
        f"{cpu_requests / total * 1000:.1f} CPU ms each"
    )
    print(
        f"  paced {len(paced)} at {args.rate:.0f}/s: delay GenerationCompleted committed -> "
        f"receiver  p50 {pct(delays, 0.5):.0f} ms  p95 {p95:.0f} ms  p99 {pct(delays, 0.99):.0f} "
        f"ms   (goal p95 < {GOAL_P95_MS:.0f} ms: {verdict}); the notifier's CPU "
        f"{cpu_paced / len(paced) * 1000:.1f} ms per completion (handled and delivered)"
    )
    print(
        f"    from the publish call instead (includes the broker's commit): p50 "
        f"{pct(from_send, 0.5):.0f} ms  p95 {pct(from_send, 0.95):.0f} ms"
    )
    print(
        "    stages p50/p95 ms: "
        + ", ".join(
            f"{name} {pct(v, 0.5):.0f}/{pct(v, 0.95):.0f}"
            for name, v in (
                ("publish -> delivery row written", stages["handled"]),
                ("row -> first attempt", stages["claimed"]),
                ("attempt -> receiver", stages["sent"]),
            )
        )
    )
    print(
        f"  burst {len(burst)} at once: {rate:.0f} deliveries/s; delay p50 "
        f"{pct(burst_delays, 0.5):.0f} ms  p95 {pct(burst_delays, 0.95):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--paced", type=int, default=500, help="completions sent one by one")
    parser.add_argument("--rate", type=float, default=50.0, help="paced completions per second")
    parser.add_argument("--burst", type=int, default=1000, help="completions sent at once")
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        default=NOTIFIER_FETCH_MAX_WAIT_MS,
        help="the notifier's KAFKA_FETCH_MAX_WAIT_MS (default: what make run gives it; "
        "Kafka's default is 500)",
    )
    parser.add_argument(
        "--serve-receiver", nargs=2, metavar=("PORT", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver(int(args.serve_receiver[0]), args.serve_receiver[1])
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
