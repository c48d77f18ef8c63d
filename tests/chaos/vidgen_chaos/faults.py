"""The fault schedule (drawn from a printed seed) and the runner that applies it.

The same seed and size give the same schedule: which process is killed when, when each piece
of infrastructure restarts or goes down for ``outage_s``, and when each simulator fault is on.
Times are seconds after the load starts. Every applied fault is recorded with its real start
and end (wall clock): the invariants attribute failures and orphaned tasks to them.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from vidgen_chaos.stack import PrivateStack
from vidgen_chaos.supervisor import Supervisor, now

PROCESSES = (
    *(
        f"{service}{suffix}"
        for service in ("gateway", "generator", "poller", "media")
        for suffix in ("", "-relay")
    ),
    "notifier",  # it emits no events: no relay
)


@dataclass(frozen=True)
class Size:
    name: str
    generations: int
    load_s: float  # generate requests are spread over this long
    kills_per_process: int
    infra: tuple[str, ...]  # "<part>:restart" or "<part>:outage"
    sim_rounds: int  # how many times each simulator fault is turned on
    moderated: int  # generations whose prompt carries a moderation word
    settle_s: float  # after the last fault, how long every generation has to end
    per_user: int = 5  # generations per user (the gateway's default in-flight limit)


SIZES = {
    "ci": Size("ci", 60, 50, 1, ("postgres:restart",), 1, 2, 240),
    "full": Size(
        "full",
        500,
        420,
        3,
        tuple(f"{p}:{k}" for p in ("postgres", "kafka", "s3") for k in ("restart", "outage")),
        2,
        5,
        480,
    ),
}


def sim_faults(runway_timeout_s: float) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Simulator faults: name → (patch that turns it on, patch that turns it off)."""

    def rule(key: str, on: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return {key: on}, {key: {"next_n": 0, "rate": 0}}

    hang = {"next_n": 1, "rate": 0, "mode": "hang", "hang_s": runway_timeout_s + 5}
    faults = {
        "rate_limit_429": rule("rate_limit", {"next_n": 6, "rate": 0, "retry_after_s": 1.0}),
        "server_errors_502": rule("server_errors", {"next_n": 6, "rate": 0, "status": 502}),
        "server_errors_503": rule("server_errors", {"next_n": 6, "rate": 0, "status": 503}),
        "lost_create_hang": rule("lost_create", hang),
        "lost_create_drop": rule("lost_create", {"next_n": 1, "rate": 0, "mode": "drop"}),
        "download_truncate": (
            {"download_faults": {"next_n": 2, "mode": "truncate", "after_bytes": 4096}},
            {"download_faults": {"next_n": 0}},
        ),
        "download_reset": (
            {"download_faults": {"next_n": 2, "mode": "reset", "after_bytes": 4096}},
            {"download_faults": {"next_n": 0}},
        ),
        "expired_urls": ({"output_url_ttl_s": 1.0}, {"output_url_ttl_s": 300.0}),
    }
    for mode in ("500", "504", "broken_body"):
        faults[f"create_then_error_{mode}"] = rule(
            "create_then_error", {"next_n": 1, "rate": 0, "mode": mode}
        )
    return faults


SIM_FAULT_WINDOW_S = 15.0


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str  # kill | term | restart | outage | sim
    target: str  # process name, infrastructure part, or simulator fault name

    def describe(self) -> str:
        what = {"kill": "kill -9", "term": "SIGTERM", "restart": "restart", "outage": "down"}
        return f"{self.at_s:7.1f} s  {what.get(self.kind, 'sim')} {self.target}"


def schedule(seed: int, size: Size, signal: str) -> list[Fault]:
    """The faults of a run, in time order (``signal``: ``kill`` or ``term`` for processes)."""
    rng = random.Random(f"faults-{seed}")
    end = size.load_s + 10
    faults = [
        Fault(round(rng.uniform(5, end), 1), signal, name)
        for name in PROCESSES
        for _ in range(size.kills_per_process)
    ]
    slot = (size.load_s - 10) / max(1, len(size.infra))
    for i, item in enumerate(size.infra):
        part, kind = item.split(":")
        start = 10 + i * slot
        faults.append(Fault(round(rng.uniform(start, start + slot * 0.3), 1), kind, part))
    for _ in range(size.sim_rounds):
        for name in sim_faults(0):
            faults.append(Fault(round(rng.uniform(2, size.load_s), 1), "sim", name))
    return sorted(faults, key=lambda f: (f.at_s, f.kind, f.target))


@dataclass
class Applied:
    fault: Fault
    started: datetime
    ended: datetime | None = None
    outcome: str = "ok"


@dataclass
class FaultRunner:
    supervisor: Supervisor
    infra: PrivateStack
    sim_url: str
    runway_timeout_s: float
    outage_s: float = 30.0
    applied: list[Applied] = field(default_factory=list)
    create_then_error: bool = False

    async def detect(self) -> None:
        """Whether the simulator knows ``create_then_error`` (its scenario forbids unknown keys)."""
        async with httpx.AsyncClient(timeout=10) as client:
            scenario = (await client.get(f"{self.sim_url}/_sim/scenario")).json()
        self.create_then_error = "create_then_error" in scenario

    async def run(self, faults: list[Fault], t0: float) -> None:
        loop = asyncio.get_running_loop()

        async def one(fault: Fault) -> None:
            await asyncio.sleep(max(0.0, t0 + fault.at_s - loop.time()))
            record = Applied(fault, now())
            self.applied.append(record)
            try:
                record.outcome = await self._apply(fault)
            except Exception as exc:  # a harness or infrastructure problem: reported, not hidden
                record.outcome = f"error: {exc!r}"[:300]
            record.ended = now()

        await asyncio.gather(*(one(f) for f in faults))

    async def _apply(self, fault: Fault) -> str:
        if fault.kind == "kill":
            return "ok" if self.supervisor.signal(fault.target, "kill") else "not running"
        if fault.kind == "term":
            return await self.supervisor.terminate(fault.target)
        if fault.kind == "restart":
            await self.infra.restart(fault.target)
            return "ok"
        if fault.kind == "outage":
            await self.infra.stop(fault.target)
            await asyncio.sleep(self.outage_s)
            await self.infra.start(fault.target)
            return "ok"
        if fault.target.startswith("create_then_error") and not self.create_then_error:
            return "not available"
        on, off = sim_faults(self.runway_timeout_s)[fault.target]
        async with httpx.AsyncClient(base_url=self.sim_url, timeout=10) as client:
            (await client.put("/_sim/scenario", json=on)).raise_for_status()
            await asyncio.sleep(SIM_FAULT_WINDOW_S)
            (await client.put("/_sim/scenario", json=off)).raise_for_status()
        return "ok"
