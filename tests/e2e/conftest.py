"""The whole system as real processes, for end-to-end tests through the REST API.

One session-scoped system: the Runway simulator and, for each service, a worker process and an
outbox-relay process (as ``make run`` starts them), against the local PostgreSQL, Kafka and S3,
isolated by a fresh database, bucket and topic prefix. Each process logs to its own file; a
failing test prints the tails. All services export spans to one JSON-lines file.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "generator", "poller", "media")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    ready_url: str

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


def _start(name: str, argv: list[str], env: dict[str, str], ready: str, logs: Path) -> Process:
    log = logs / f"{name}.log"
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return Process(name, popen, log, ready)


def _wait_ready(system: System, within: float) -> None:
    pending = list(system.processes)
    deadline = time.monotonic() + within
    while pending:
        for p in pending:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode}\n{p.tail()}")
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


def _stop(processes: list[Process]) -> None:
    for p in reversed(processes):
        if p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for p in processes:
        try:
            p.popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait()


@pytest.fixture(scope="session")
def system(
    database_url: str,
    kafka_bootstrap: str,
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    run_id = uuid.uuid4().hex[:8]
    logs = tmp_path_factory.mktemp("e2e-logs")
    db_name = f"e2e_{run_id}"
    admin_url = make_url(database_url.replace("+asyncpg", "+psycopg"))
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    db_url = make_url(database_url).set(database=db_name).render_as_string(hide_password=False)

    sim_port, gateway_port = free_port(), free_port()
    trace_file = logs / "spans.jsonl"
    env = {
        **os.environ,
        "VIDGEN_ENV": "development",
        "DATABASE_URL": db_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": f"e2e{run_id}.",
        "KAFKA_SESSION_TIMEOUT_MS": "3000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "S3_ENDPOINT": s3_endpoint,
        "S3_BUCKET": f"e2e-{run_id}",
        "RUNWAYML_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "VIDGEN_TRACE_FILE": str(trace_file),
        "VIDGEN_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
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
        _start(
            "runway-sim",
            [python, "-m", "runway_sim", "--host", "127.0.0.1", "--port", str(sim_port)],
            env,
            f"{system.sim}/_sim/health",
            logs,
        )
    )
    for service in SERVICES:
        for role in ("worker", "relay"):
            port = gateway_port if (service, role) == ("gateway", "worker") else free_port()
            name = service if role == "worker" else f"{service}-relay"
            system.ops_ports[name] = port
            system.processes.append(
                _start(
                    name,
                    [python, "-m", f"vidgen_{service}"],
                    {**env, "VIDGEN_ROLE": role, "VIDGEN_HTTP_PORT": str(port)},
                    f"http://127.0.0.1:{port}/readyz",
                    logs,
                )
            )
    try:
        _wait_ready(system, within=120)
        system.set_scenario(_fast())
        yield system
    finally:
        _stop(system.processes)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()


def _fast() -> dict[str, Any]:
    from runway_sim.testing import fast_scenario

    scenario: dict[str, Any] = fast_scenario(run_s=0.5, queue_s=0.05)
    return scenario


@pytest.fixture
def fast_runway(system: System) -> Iterator[System]:
    """Reset the simulator's scenario to fast tasks around a test that changes it."""
    system.set_scenario(_fast())
    yield system
    system.set_scenario(_fast())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and "system" in getattr(item, "funcargs", {}):
        system: System = item.funcargs["system"]
        report.sections.append(("process logs", system.logs()))
    return report
