"""Run the whole system locally, in the foreground (``make run``).

Starts the local infrastructure (if it is not up), the Runway simulator (unless
``RUNWAYML_API_SECRET`` is set: then real Runway), and every service as two processes (its
workers and its outbox relay); waits until each answers ``/readyz``; prints where to go; streams
one prefixed log; and on Ctrl-C or SIGTERM stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vidgen_common.devtokens import DevTokenSettings, mint_dev_token

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / ".local" / "infra.env"
# The local broker (tansu) waits out a fetch's bound before it answers, so every hop through it
# costs up to the bound (Kafka's default 500 ms). Two consumers fetch with a short one: the
# notifier (its hop is most of a webhook's delay: bench/webhooks.py) and the generator's worker
# (it hears of a freed Runway slot from its consumer: bench/slots.py, refill gap p50 470-580 ms
# -> 260-300 ms). Not the others: the gateway's projection with it made its own hop slower, and
# every service with it did not help bench/pipeline.py. KAFKA_FETCH_MAX_WAIT_MS overrides them.
NOTIFIER_FETCH_MAX_WAIT_MS = 50
GENERATOR_FETCH_MAX_WAIT_MS = 50
SHORT_FETCH_BOUNDS_MS = {
    "notifier": NOTIFIER_FETCH_MAX_WAIT_MS,
    "generator": GENERATOR_FETCH_MAX_WAIT_MS,
}
COLORS = ["36", "33", "35", "32", "34", "31", "96", "93", "95", "92"]


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str
    color: str
    process: asyncio.subprocess.Process | None = None


def load_env_file() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key] = value
    return env


def pretty(line: str) -> str:
    """A JSON log line as `time level message [generation]`; other lines unchanged."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if not isinstance(entry, dict) or "msg" not in entry:
        return line
    ts = str(entry.get("ts", ""))[11:19]
    level = str(entry.get("level", "")).upper()[:5]
    gen = f" [gen {str(entry['generation_id'])[:8]}]" if entry.get("generation_id") else ""
    exc = ("\n" + str(entry["exc"])) if entry.get("exc") else ""
    return f"{ts} {level:<5} {entry['msg']}{gen}{exc}"


class Supervisor:
    def __init__(self, procs: list[Proc], color: bool) -> None:
        self.procs = procs
        self.color = color
        self.width = max(len(p.name) for p in procs)
        self._pumps: list[asyncio.Task[None]] = []

    def say(self, proc: Proc | None, text: str) -> None:
        name = proc.name if proc else "run"
        tag = f"{name:<{self.width}} |"
        if self.color and proc is not None:
            tag = f"\033[{proc.color}m{tag}\033[0m"
        elif self.color:
            tag = f"\033[1m{tag}\033[0m"
        print(f"{tag} {text}", flush=True)

    async def start(self) -> None:
        for proc in self.procs:
            proc.process = await asyncio.create_subprocess_exec(
                *proc.argv,
                env=proc.env,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            )
            self._pumps.append(asyncio.create_task(self._pump(proc)))

    async def _pump(self, proc: Proc) -> None:
        assert proc.process is not None
        assert proc.process.stdout is not None
        async for raw in proc.process.stdout:
            self.say(proc, pretty(raw.decode(errors="replace").rstrip()))

    def exited(self) -> Proc | None:
        for proc in self.procs:
            if proc.process is not None and proc.process.returncode is not None:
                return proc
        return None

    async def wait_ready(self, deadline_s: float) -> None:
        pending = list(self.procs)
        end = time.monotonic() + deadline_s
        while pending:
            if (dead := self.exited()) is not None:
                raise RuntimeError(f"{dead.name} exited before it was ready")
            pending = [p for p in pending if not await asyncio.to_thread(answers, p.ready_url)]
            if time.monotonic() > end:
                names = ", ".join(p.name for p in pending)
                raise RuntimeError(f"not ready after {deadline_s:.0f} s: {names}")
            await asyncio.sleep(0.3)

    async def stop(self, grace_s: float = 20.0) -> None:
        for proc in reversed(self.procs):
            if proc.process is not None and proc.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.process.send_signal(signal.SIGTERM)
        end = time.monotonic() + grace_s
        for proc in self.procs:
            if proc.process is None:
                continue
            try:
                await asyncio.wait_for(proc.process.wait(), max(0.1, end - time.monotonic()))
            except TimeoutError:
                self.say(None, f"{proc.name} did not stop in {grace_s:.0f} s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    proc.process.kill()
                await proc.process.wait()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback URL)
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def dev_token(user: str) -> str:
    try:
        return mint_dev_token(DevTokenSettings(), user)
    except ValueError as exc:
        return f"(no development token: {exc})"


def build(env: dict[str, str], sim_port: int, gateway_port: int) -> list[Proc]:
    python = sys.executable
    # the gateway forwards /api/webhooks* to the notifier (gateway port + 4)
    env = {"VIDGEN_NOTIFIER_URL": f"http://127.0.0.1:{gateway_port + 4}", **env}
    procs: list[Proc] = []
    colors = iter(COLORS)
    if not env.get("RUNWAYML_API_SECRET"):
        sim_env = {**env}
        procs.append(
            Proc(
                "runway-sim",
                [python, "-m", "runway_sim", "--host", "127.0.0.1", "--port", str(sim_port)],
                sim_env,
                f"http://127.0.0.1:{sim_port}/_sim/health",
                next(colors),
            )
        )
    for i, service in enumerate(("gateway", "generator", "poller", "media")):
        port = gateway_port + i
        for role, role_port in (("worker", port), ("relay", port + 10)):
            name = service if role == "worker" else f"{service}-relay"
            procs.append(
                Proc(
                    name,
                    [python, "-m", f"vidgen_{service}"],
                    {**env, "VIDGEN_ROLE": role, "VIDGEN_HTTP_PORT": str(role_port)},
                    f"http://127.0.0.1:{role_port}/readyz",
                    next(colors),
                )
            )
    # the notifier emits no events: one worker process, no relay (port 8004)
    notifier_port = gateway_port + 4
    procs.append(
        Proc(
            "notifier",
            [python, "-m", "vidgen_notifier"],
            {**env, "VIDGEN_ROLE": "worker", "VIDGEN_HTTP_PORT": str(notifier_port)},
            f"http://127.0.0.1:{notifier_port}/readyz",
            next(colors),
        )
    )
    for proc in procs:  # the user's own setting (in env) wins
        bound = SHORT_FETCH_BOUNDS_MS.get(proc.name)
        if bound is not None:
            proc.env = {"KAFKA_FETCH_MAX_WAIT_MS": str(bound), **proc.env}
    return procs


def banner(env: dict[str, str], gateway: str) -> str:
    token = dev_token("demo-user")
    runway = (
        "real Runway"
        if env.get("RUNWAYML_API_SECRET")
        else env["RUNWAYML_BASE_URL"] + " (simulator)"
    )
    return f"""
  vidgen is running.
    API        {gateway}/api
    API docs   {gateway}/docs   (OpenAPI: {gateway}/openapi.json)
    Runway     {runway}
    Kafka      {env.get("KAFKA_BOOTSTRAP_SERVERS")}
    S3         {env.get("S3_ENDPOINT")}
    PostgreSQL {env.get("DATABASE_URL")}

  A development token for user "demo-user" (make another: uv run vidgen token NAME):
    export TOKEN={token}

  Try it:
    curl -s -H "Authorization: Bearer $TOKEN" -F file=@docs/sample.png {gateway}/api/images/upload
    curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
         -d '{{"projectId": "<projectId from above>", "prompt": "a slow pan over the scene"}}' \\
         {gateway}/api/videos/generate
    curl -s -H "Authorization: Bearer $TOKEN" {gateway}/api/videos/status/<generationId>
  or simply: make demo

  Ctrl-C stops everything.
"""


def infra(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "infra.sh"), command], capture_output=True, text=True, check=False
    )


def infra_parts(status: str) -> dict[str, str]:
    """``infra.sh status``'s lines as part -> state (``running (pid N)`` or ``stopped``)."""
    parts = {}
    for line in status.splitlines():
        name, sep, state = line.partition(": ")
        if sep:
            parts[name.strip()] = state.strip()
    return parts


def started_by_up(before: str, after: str) -> bool:
    """Whether ``infra.sh up`` started anything, from its status before and after: a part
    that was not running before (or runs with another pid) was started by it, whatever the
    parts are (the broker's store is one only with S3 broker storage)."""
    return infra_parts(before) != infra_parts(after)


async def supervise(args: argparse.Namespace, env: dict[str, str], banner_text: str) -> int:
    sup = Supervisor(build(env, args.sim_port, args.gateway_port), color=sys.stdout.isatty())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        await sup.start()
        ready = asyncio.create_task(sup.wait_ready(args.ready_timeout))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            ready.result()
            print(banner_text, flush=True)
            while not stop.is_set():
                if (dead := sup.exited()) is not None:
                    raise RuntimeError(f"{dead.name} exited unexpectedly")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        else:
            ready.cancel()
    except RuntimeError as exc:
        sup.say(None, f"error: {exc}")
        code = 1
    finally:
        sup.say(None, "stopping…")
        await sup.stop()
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateway-port", type=int, default=8000)
    parser.add_argument("--sim-port", type=int, default=8100)
    parser.add_argument("--ready-timeout", type=float, default=90)
    args = parser.parse_args()

    before = infra("status").stdout
    up = infra("up")
    print(up.stdout, end="", flush=True)
    if up.returncode:
        print(up.stderr, file=sys.stderr)
        return 1
    infra_was_up = not started_by_up(before, infra("status").stdout)
    env = {**os.environ}
    for key, value in load_env_file().items():
        env.setdefault(key, value)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if not env.get("RUNWAYML_API_SECRET"):
        env["RUNWAYML_BASE_URL"] = f"http://127.0.0.1:{args.sim_port}"
    try:
        return asyncio.run(
            supervise(args, env, banner(env, f"http://127.0.0.1:{args.gateway_port}"))
        )
    finally:
        if not infra_was_up:
            print(infra("down").stdout, end="", flush=True)
        print("stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
