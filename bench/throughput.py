"""Generations per second end to end, and the CPU each service spends on one generation.

The whole system as ``make run`` starts it (``scripts/run.py``'s process list: the Runway
simulator, and every service as two processes, its workers and its outbox relay), in a
database, topic prefix and bucket of its own, with the simulator's tasks taking no time
(queue and run 0 s), no concurrency or daily limit, and one small output (a 2 s video of one
cached render). Users (``--users``) keep ``--backlog`` generations accepted but not yet
finished, through the REST API; the first ``--warmup-s`` seconds are not counted.

Over the measured ``--seconds`` it prints: generations completed per second (accepted ->
``completed`` in the gateway's projection), the latency of each (created_at -> completed_at,
p50/p95), and each process's CPU time per generation in milliseconds (user + system from
``/proc/<pid>/stat`` before and after; PostgreSQL: the postmaster and all its backends;
the broker and S3 server too), with the machine's load average: the machine is shared,
and every figure is CPU-bound. Goal: >= 100 generations/s on 2 cores.

    scripts/with-env.sh uv run python bench/throughput.py [--seconds 120] [--backlog 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc_cpu import cpu_s, infra_pids, tree_cpu_s  # noqa: E402
from scripts.infra_stack import InfraStack, free_port  # noqa: E402
from scripts.run import answers, build, load_env_file  # noqa: E402
from vidgen_common.db import asyncpg_dsn  # noqa: E402
from vidgen_gateway.auth import mint_dev_token  # noqa: E402
from vidgen_gateway.settings import GatewaySettings  # noqa: E402

SECRET = "bench-secret-0123456789abcdefghijklmnop"  # noqa: S105 (a bench-only key)
GOAL = 100.0


class Meter:
    """CPU seconds of each process so far; PostgreSQL's: the postmaster with every backend,
    those that exited during the run included."""

    def __init__(self, procs: dict[str, int], pg: int | None) -> None:
        self.procs, self.pg = procs, pg

    def read(self) -> dict[str, float]:
        out = {name: cpu_s(pid) for name, pid in self.procs.items()}
        if self.pg is not None:
            out["postgres (all backends)"] = tree_cpu_s(self.pg)
        return out


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (640, 360), (20, 90, 160)).save(buf, format="PNG")
    return buf.getvalue()


async def wait_ready(urls: dict[str, str], procs: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    pending = dict(urls)
    while pending:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}")
        for name in [n for n, u in pending.items() if await asyncio.to_thread(answers, u)]:
            del pending[name]
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready: {', '.join(pending)}")
        await asyncio.sleep(0.3)


async def drive(args: argparse.Namespace, gateway: str, dsn: str) -> dict[str, object]:
    settings = GatewaySettings(jwt_secret=SECRET)
    users = [f"tp-user-{i}" for i in range(args.users)]
    headers = {u: {"Authorization": f"Bearer {mint_dev_token(settings, u)}"} for u in users}
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    image = png()
    db = await asyncpg.connect(dsn, server_settings={"search_path": "gateway"})
    async with httpx.AsyncClient(base_url=gateway, limits=limits, timeout=60) as client:
        projects = {}
        for u in users:
            r = await client.post(
                "/api/images/upload",
                files={"file": ("a.png", image, "image/png")},
                headers=headers[u],
            )
            r.raise_for_status()
            projects[u] = r.json()["projectId"]
        accepted = 0
        errors: dict[int, int] = {}
        stop = asyncio.Event()
        room = asyncio.Semaphore(0)

        sending = 0  # requests between taking their permit and their answer

        async def sender(i: int) -> None:
            nonlocal accepted, sending
            n = 0
            while not stop.is_set():
                await room.acquire()
                u = users[(i + n) % len(users)]
                n += 1
                sending += 1
                try:
                    r = await client.post(
                        "/api/videos/generate",
                        json={"projectId": projects[u], "prompt": "throughput", "duration": 2},
                        headers={**headers[u], "Idempotency-Key": uuid.uuid4().hex},
                    )
                finally:
                    sending -= 1
                if r.status_code == 202:
                    accepted += 1
                else:
                    errors[r.status_code] = errors.get(r.status_code, 0) + 1
                    await asyncio.sleep(0.1)

        async def done() -> int:
            return int(
                await db.fetchval("SELECT count(*) FROM generations WHERE status = 'completed'")
            )

        senders = [asyncio.create_task(sender(i)) for i in range(16)]
        started = time.monotonic()
        window: dict[str, object] = {}
        try:
            while True:
                finished = int(
                    await db.fetchval(
                        "SELECT count(*) FROM generations "
                        "WHERE status IN ('completed', 'failed', 'cancelled')"
                    )
                )
                # accepted and not finished, being sent, or allowed and not yet sent
                outstanding = accepted - finished + sending + room._value
                for _ in range(max(0, args.backlog - outstanding)):
                    room.release()
                elapsed = time.monotonic() - started
                if elapsed >= args.warmup_s and "t0" not in window:
                    window.update(t0=time.monotonic(), c0=await done(), cpu0=args.meter.read())
                    window["since"] = await db.fetchval("SELECT now()")
                if elapsed >= args.warmup_s + args.seconds:
                    window.update(t1=time.monotonic(), c1=await done(), cpu1=args.meter.read())
                    break
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            for _ in senders:
                room.release()
            for t in senders:
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*senders)
        lat = await db.fetch(
            "SELECT extract(epoch FROM completed_at - created_at) AS s FROM generations "
            "WHERE status = 'completed' AND created_at >= $1 ORDER BY 1",
            window["since"],
        )
        failed = await db.fetchval("SELECT count(*) FROM generations WHERE status = 'failed'")
        window.update(latencies=[float(r["s"]) for r in lat], errors=errors, failed=failed)
    await db.close()
    return window


async def run(args: argparse.Namespace) -> int:
    stack: InfraStack | None = None
    if args.broker_storage == "shared":
        env = {**os.environ}
        for key, value in load_env_file().items():
            env.setdefault(key, value)
    else:
        # a private stack whose broker keeps records in memory: the local broker on its S3
        # storage takes ~30 records/s (bench/broker_storage.py), a generation makes ~6
        stack = InfraStack.private(Path(tempfile.mkdtemp(prefix="vidgen-tp-infra-")), "memory")
        stack.up()
        env = {**stack.env()}
        for key, value in _read_env(stack.local_dir / "infra.env").items():
            env[key] = value
        os.environ["VIDGEN_LOCAL_DIR"] = str(stack.local_dir)
    try:
        return await _run(args, env)
    finally:
        if stack is not None:
            stack.down()


def _read_env(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    )


async def _run(args: argparse.Namespace, env: dict[str, str]) -> int:
    tag = uuid.uuid4().hex[:8]
    base_dsn = asyncpg_dsn(env["DATABASE_URL"])
    dbname = f"bench_tp_{tag}"
    admin = await asyncpg.connect(base_dsn)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    await admin.close()
    db_url = env["DATABASE_URL"].rsplit("/", 1)[0] + f"/{dbname}"
    sim_port, gw_port = free_port(), free_port()
    while len({gw_port + i for i in range(14)} & {sim_port}) or not all(
        _free(gw_port + i) for i in range(14)
    ):
        gw_port = free_port()
    scenario = {
        "time_scale": 1.0,
        "queue": {"median_s": 0, "sigma": 0, "min_s": 0, "max_s": None},
        "durations": {"gen4_turbo": {"median_s": 0, "sigma": 0, "min_s": 0, "max_s": None}},
        "org": {
            "credit_balance": 10**12,
            "max_monthly_credit_spend": 10**12,
            "models": {"gen4_turbo": {"max_concurrent": None, "max_daily": None}},
        },
    }
    env.update(
        DATABASE_URL=db_url,
        KAFKA_TOPIC_PREFIX=f"bench-tp-{tag}.",
        S3_BUCKET=f"bench-tp-{tag}",
        RUNWAYML_BASE_URL=f"http://127.0.0.1:{sim_port}",
        RUNWAY_SIM_SCENARIO=json.dumps(scenario),
        VIDGEN_JWT_SECRET=SECRET,
        VIDGEN_MAX_IN_FLIGHT_PER_USER="100000000",
        VIDGEN_GENERATE_RATE_LIMIT="100000000",
        VIDGEN_DURATION_PRIORS_S=json.dumps({"gen4_turbo": 0.01}),
        VIDGEN_DEFAULT_DURATION_PRIOR_S="0.01",
        VIDGEN_LOG_LEVEL=args.log_level,
        VIDGEN_WEB_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    env.pop("RUNWAYML_API_SECRET", None)
    logs = Path(tempfile.mkdtemp(prefix="vidgen-throughput-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    code = 0
    try:
        for p in build(env, sim_port, gw_port):
            out = (logs / f"{p.name}.log").open("wb")
            procs[p.name] = subprocess.Popen(  # noqa: ASYNC220 (started before measuring)
                p.argv,
                env=p.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        urls = {p.name: p.ready_url for p in build(env, sim_port, gw_port)}
        await wait_ready(urls, procs)
        infra = infra_pids()
        pg = infra.pop("postgres", None)
        args.meter = Meter({**{n: p.pid for n, p in procs.items()}, **infra}, pg)
        w = await drive(args, f"http://127.0.0.1:{gw_port}", asyncpg_dsn(db_url))
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for name, proc in procs.items():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.returncode not in (0, -15):
                print(f"{name} exited {proc.returncode}; log: {logs / (name + '.log')}")
        admin = await asyncpg.connect(base_dsn)
        with contextlib.suppress(asyncpg.PostgresError):
            await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()

    seconds = float(w["t1"]) - float(w["t0"])  # type: ignore[arg-type]
    completed = int(w["c1"]) - int(w["c0"])  # type: ignore[call-overload]
    rate = completed / seconds
    lat: list[float] = w["latencies"]  # type: ignore[assignment]
    cpu0: dict[str, float] = w["cpu0"]  # type: ignore[assignment]
    cpu1: dict[str, float] = w["cpu1"]  # type: ignore[assignment]
    load = [f"{x:.2f}" for x in os.getloadavg()]
    print(
        f"\nthroughput: {args.seconds:.0f} s measured after {args.warmup_s:.0f} s warm-up, "
        f"backlog {args.backlog}, {args.users} users, {os.cpu_count()} CPUs, "
        f"broker storage {args.broker_storage}, load average {' '.join(load)} "
        "(a shared machine: other work competes for the CPUs)"
    )
    print(
        f"generations/s end to end (accepted -> completed): {rate:.1f}  (goal >= {GOAL:.0f})  "
        f"[{completed} in {seconds:.1f} s; failed {w['failed']}; refused {w['errors'] or 0}]"
    )
    if lat:
        print(
            f"accepted -> completed latency: p50 {lat[len(lat) // 2]:.2f} s, "
            f"p95 {lat[int(len(lat) * 0.95)]:.2f} s (includes the backlog's queueing)"
        )
    total = 0.0
    print("CPU ms per generation:")
    for name in sorted(cpu1, key=lambda n: -(cpu1[n] - cpu0.get(n, 0.0))):
        ms = (cpu1[name] - cpu0.get(name, 0.0)) * 1000 / max(1, completed)
        total += ms
        print(f"  {name:24s} {ms:7.2f}")
    print(
        f"  {'all':24s} {total:7.2f}  (2 cores allow {2000 / max(total, 1e-9):.0f}/s at this cost)"
    )
    if w["failed"]:
        code = 1
    print(f"logs: {logs}")
    return code


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--warmup-s", type=float, default=15)
    parser.add_argument("--backlog", type=int, default=200)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument(
        "--broker-storage",
        choices=("memory", "shared"),
        default="memory",
        help="memory: a private stack, its broker in memory (default); shared: the stack of "
        ".local/infra.env as it is (the broker on S3 storage caps this at ~5 generations/s)",
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
