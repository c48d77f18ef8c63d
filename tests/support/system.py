"""The whole system as real processes, as ``make run`` starts it, for e2e and browser tests.

:func:`running_system` starts the Runway simulator and, for each service, a worker process
and an outbox-relay process (the notifier, which emits no events: its worker only), against
the given PostgreSQL, Kafka and S3, isolated by a fresh
database, bucket and topic prefix; it stops them all on exit. Each process logs to its own
file (:meth:`System.logs` gives the tails); all services export spans to one JSON-lines
file. :meth:`System.stop` and :meth:`System.start` stop and start one process by name (as a
crash and a restart would), e.g. ``system.stop("gateway")``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from vidgen_runway.catalog import MODELS
from vidgen_testing import topics

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "generator", "poller", "media")
RUNWAY_MODELS = tuple(MODELS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready_url: str
    popen: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        with self.log.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(
                self.argv, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        content = self.log.read_text(errors="replace").splitlines()
        return "\n".join(content[-lines:])


@dataclass
class System:
    gateway: str
    sim: str
    env: dict[str, str]
    trace_file: Path
    database_url: str
    processes: list[Process] = field(default_factory=list)
    ops_ports: dict[str, int] = field(default_factory=dict)

    def token(self, user: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "vidgen_cli", "token", user],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def client(self, user: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.gateway,
            headers={"Authorization": f"Bearer {self.token(user)}"},
            timeout=30,
        )

    def set_scenario(self, patch: dict[str, Any]) -> None:
        httpx.put(f"{self.sim}/_sim/scenario", json=patch, timeout=10).raise_for_status()

    def counters(self) -> dict[str, Any]:
        response = httpx.get(f"{self.sim}/_sim/counters", timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        engine = create_engine(self.database_url.replace("+asyncpg", "+psycopg"))
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(query), params)]
        finally:
            engine.dispose()

    def spans(self) -> list[dict[str, Any]]:
        if not self.trace_file.exists():
            return []
        lines = self.trace_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def logs(self) -> str:
        return "\n\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes)

    def process(self, name: str) -> Process:
        for p in self.processes:
            if p.name == name:
                return p
        raise KeyError(name)

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop one process (``gateway``, ``media-relay``, ``runway-sim``…) and wait for it."""
        _stop([self.process(name)], sig)

    def start(self, name: str, within: float = 60) -> None:
        """Start a stopped process again and wait until it is ready."""
        p = self.process(name)
        if p.running:
            raise RuntimeError(f"{name} is running")
        p.launch()
        _wait_ready(self, [p], within)


def _wait_ready(system: System, processes: list[Process], within: float) -> None:
    pending = list(processes)
    deadline = time.monotonic() + within
    while pending:
        for p in pending:
            if not p.running:
                code = p.popen.returncode if p.popen else None
                raise RuntimeError(f"{p.name} exited with {code}\n{p.tail()}")
        still = []
        for p in pending:
            try:
                ok = httpx.get(p.ready_url, timeout=2).status_code == 200
            except httpx.HTTPError:
                ok = False
            if not ok:
                still.append(p)
        pending = still
        if pending and time.monotonic() > deadline:
            names = ", ".join(p.name for p in pending)
            raise RuntimeError(f"not ready after {within} s: {names}\n{system.logs()}")
        time.sleep(0.2)


def _stop(processes: list[Process], sig: signal.Signals = signal.SIGTERM) -> None:
    for p in reversed(processes):
        if p.popen is not None and p.popen.poll() is None:
            p.popen.send_signal(sig)
    deadline = time.monotonic() + 20
    for p in processes:
        if p.popen is None:
            continue
        try:
            p.popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait()


QUEUED_MODEL = "gen4.5"  # the model with one slot in every system started here


@contextmanager
def running_system(
    database_url: str,
    kafka_bootstrap: str,
    s3_endpoint: str,
    logs: Path,
    *,
    env_overrides: dict[str, str] | None = None,
) -> Iterator[System]:
    """Every service as real processes on a fresh database, bucket and topic prefix."""
    run_id = uuid.uuid4().hex[:8]
    db_name = f"e2e_{run_id}"
    admin_url = make_url(database_url.replace("+asyncpg", "+psycopg"))
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    db_url = make_url(database_url).set(database=db_name).render_as_string(hide_password=False)

    sim_port, gateway_port, notifier_port = free_port(), free_port(), free_port()
    trace_file = logs / "spans.jsonl"
    env = {
        **os.environ,
        "VIDGEN_ENV": "development",
        "DATABASE_URL": db_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": topics.remember(f"e2e{run_id}."),
        "KAFKA_SESSION_TIMEOUT_MS": "3000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "S3_ENDPOINT": s3_endpoint,
        "S3_BUCKET": f"e2e-{run_id}",
        "RUNWAYML_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "VIDGEN_TRACE_FILE": str(trace_file),
        "VIDGEN_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        # the simulator's tasks take about a second (fast_scenario): so should the priors
        "VIDGEN_DURATION_PRIORS_S": json.dumps(dict.fromkeys(RUNWAY_MODELS, 1.0)),
        # the gateway forwards /api/webhooks* to the notifier; webhook receivers of the tests
        # listen on loopback (refused anywhere else) and retries come within milliseconds
        "VIDGEN_NOTIFIER_URL": f"http://127.0.0.1:{notifier_port}",
        "VIDGEN_WEBHOOK_ALLOWED_TARGETS": "127.0.0.1",
        "VIDGEN_WEBHOOK_SCHEDULE_SCALE": "0.001",
        # one model has a single Runway slot, so a test can make a generation wait in the queue
        "VIDGEN_MODEL_BUDGETS": json.dumps({QUEUED_MODEL: 1}),
        **(env_overrides or {}),
    }
    env.pop("RUNWAYML_API_SECRET", None)
    system = System(
        gateway=f"http://127.0.0.1:{gateway_port}",
        sim=f"http://127.0.0.1:{sim_port}",
        env=env,
        trace_file=trace_file,
        database_url=db_url,
    )
    python = sys.executable
    system.processes.append(
        Process(
            "runway-sim",
            [python, "-m", "runway_sim", "--host", "127.0.0.1", "--port", str(sim_port)],
            env,
            logs / "runway-sim.log",
            f"{system.sim}/_sim/health",
        )
    )
    for service in SERVICES:
        for role in ("worker", "relay"):
            port = gateway_port if (service, role) == ("gateway", "worker") else free_port()
            name = service if role == "worker" else f"{service}-relay"
            system.ops_ports[name] = port
            system.processes.append(
                Process(
                    name,
                    [python, "-m", f"vidgen_{service}"],
                    {**env, "VIDGEN_ROLE": role, "VIDGEN_HTTP_PORT": str(port)},
                    logs / f"{name}.log",
                    f"http://127.0.0.1:{port}/readyz",
                )
            )
    system.ops_ports["notifier"] = notifier_port
    system.processes.append(
        Process(
            "notifier",
            [python, "-m", "vidgen_notifier"],
            {**env, "VIDGEN_ROLE": "worker", "VIDGEN_HTTP_PORT": str(notifier_port)},
            logs / "notifier.log",
            f"http://127.0.0.1:{notifier_port}/readyz",
        )
    )
    try:
        for p in system.processes:
            p.launch()
        _wait_ready(system, system.processes, within=120)
        yield system
    finally:
        _stop(system.processes)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()


def fast_scenario() -> dict[str, Any]:
    """The simulator's scenario with tasks that finish in about a second."""
    from runway_sim.testing import fast_scenario as fast

    scenario: dict[str, Any] = fast(run_s=0.5, queue_s=0.05)
    return scenario


def external_system(description: Path) -> System:
    """A system already running elsewhere (e.g. as containers), as described by a JSON file.

    The file (``python -m scripts.stack … system`` writes it) gives ``gateway``, ``sim``,
    ``database_url``, ``kafka_bootstrap``, ``topic_prefix``, ``trace_file``, ``ops_ports``
    and the ``env`` a client needs (the development JWT secret). Nothing is started or
    stopped; :meth:`System.stop` and :meth:`System.start` know no process of it.
    """
    found = json.loads(description.read_text())
    env = {
        **os.environ,
        **found.get("env", {}),
        "KAFKA_BOOTSTRAP_SERVERS": found["kafka_bootstrap"],
        "KAFKA_TOPIC_PREFIX": found.get("topic_prefix", ""),
    }
    trace = found.get("trace_file")
    return System(
        gateway=found["gateway"],
        sim=found["sim"],
        env=env,
        trace_file=Path(trace) if trace else description.with_name("no-spans.jsonl"),
        database_url=found["database_url"],
        ops_ports={str(k): int(v) for k, v in found["ops_ports"].items()},
    )
