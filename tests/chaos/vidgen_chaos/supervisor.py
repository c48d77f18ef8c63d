"""Real processes, restarted when they die, as a kubelet would (after about a second).

Each :class:`Proc` runs in its own session (a Ctrl-C of the run reaches only us), logs to its
own file (appended across restarts, with a marker line per start and per signal we send), and
is restarted ``restart_after_s`` after it exited unless the supervisor is stopping. Every exit
is recorded: the ones we caused (kill -9, SIGTERM) and the others (crashes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx


def now() -> datetime:
    return datetime.now(UTC)


async def until(check: Callable[[], bool], within_s: float, every_s: float = 0.1) -> bool:
    """Poll ``check`` until it is true (True) or ``within_s`` passed (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        if check():
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(every_s)


@dataclass
class Exit:
    name: str
    at: datetime
    code: int | None
    caused_by: str | None  # "kill" / "term" when we sent the signal, else None (a crash)


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    pending_signal: str | None = None
    restart_at: float | None = None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def mark(self, text: str) -> None:
        with self.log.open("a") as out:
            out.write(f"=== chaos {now().isoformat()} {text} ===\n")


@dataclass
class Supervisor:
    procs: list[Proc]
    cwd: Path
    restart_after_s: float = 1.0
    term_grace_s: float = 30.0
    exits: list[Exit] = field(default_factory=list)
    _stopping: bool = False
    _task: asyncio.Task[None] | None = None

    def by_name(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    def _spawn(self, proc: Proc) -> None:
        proc.starts += 1
        proc.mark(f"start #{proc.starts}")
        with proc.log.open("ab") as out:  # the child keeps its own copy of the descriptor
            proc.popen = subprocess.Popen(
                proc.argv,
                env=proc.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc.restart_at = None

    async def start(self, ready_within_s: float) -> None:
        for proc in self.procs:
            self._spawn(proc)
        await self.wait_ready(self.procs, ready_within_s)
        self._task = asyncio.create_task(self._watch(), name="supervisor")

    async def wait_ready(
        self, procs: list[Proc], within_s: float, *, fail_on_exit: bool = True
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        pending = list(procs)
        async with httpx.AsyncClient(timeout=2) as client:
            while pending:
                for proc in pending if fail_on_exit else ():
                    if proc.popen is not None and proc.popen.poll() is not None:
                        raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}")
                still = []
                for proc in pending:
                    try:
                        ok = (await client.get(proc.ready_url)).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    if not ok:
                        still.append(proc)
                pending = still
                if pending and loop.time() > deadline:
                    names = ", ".join(p.name for p in pending)
                    raise RuntimeError(f"not ready after {within_s:.0f} s: {names}")
                await asyncio.sleep(0.3)

    async def not_ready(self, within_s: float) -> list[str]:
        """The processes still not ready after ``within_s`` (all must be, once faults end)."""
        try:
            await self.wait_ready(self.procs, within_s, fail_on_exit=False)
        except RuntimeError as exc:
            return str(exc).split(": ", 1)[-1].split(", ")
        return []

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            for proc in self.procs:
                if proc.popen is None or proc.alive():
                    continue
                if proc.restart_at is None:
                    code = proc.popen.returncode
                    self.exits.append(Exit(proc.name, now(), code, proc.pending_signal))
                    proc.mark(f"exited {code} ({proc.pending_signal or 'not by us'})")
                    proc.pending_signal = None
                    proc.restart_at = loop.time() + self.restart_after_s
                elif loop.time() >= proc.restart_at:
                    self._spawn(proc)
            await asyncio.sleep(0.1)

    def signal(self, name: str, how: str) -> bool:
        """Send SIGKILL (``how="kill"``) or SIGTERM (``"term"``); False if it was not running."""
        proc = self.by_name(name)
        if not proc.alive() or proc.popen is None:
            return False
        proc.pending_signal = how
        proc.mark(f"sending {'SIGKILL' if how == 'kill' else 'SIGTERM'}")
        sig = signal.SIGKILL if how == "kill" else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, sig)
        return True

    async def terminate(self, name: str) -> str:
        """SIGTERM, then SIGKILL after ``term_grace_s`` (as Kubernetes does); how it ended."""
        proc = self.by_name(name)
        popen = proc.popen
        if not self.signal(name, "term") or popen is None:
            return "not running"
        if not await until(lambda: popen.poll() is not None, self.term_grace_s):
            self.signal(name, "kill")
            return "escalated to SIGKILL"
        return "exited"

    async def stop(self, grace_s: float = 20.0) -> None:
        """Stop watching and end every process: SIGTERM, then SIGKILL after ``grace_s``."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for proc in reversed(self.procs):
            if proc.alive() and proc.popen is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        await until(lambda: not any(p.alive() for p in self.procs), grace_s)
        for proc in self.procs:
            if proc.alive() and proc.popen is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(timeout=10)

    def lines_about(self, needle: str, limit: int = 20) -> list[str]:
        """The last ``limit`` log lines (of every process) that mention ``needle``, in order."""
        found: list[tuple[str, str]] = []
        for proc in self.procs:
            with contextlib.suppress(OSError):
                for line in proc.log.read_text(errors="replace").splitlines():
                    if needle in line and "HTTP Request:" not in line:
                        found.append(_pretty(proc.name, line))
        found.sort()
        return [text for _, text in found[-limit:]]


def _pretty(name: str, line: str) -> tuple[str, str]:
    """(timestamp, `time name level message`) of a JSON log line; raw text otherwise."""
    try:
        entry = json.loads(line)
    except ValueError:
        return "", f"{name:<15} {line[:300]}"
    if not isinstance(entry, dict):
        return "", f"{name:<15} {line[:300]}"
    ts = str(entry.get("ts", ""))
    exc = str(entry.get("exc") or "").strip().splitlines()
    tail = f" | {exc[-1][:200]}" if exc else ""
    text = f"{ts[11:23]} {name:<15} {entry.get('level', '')} {str(entry.get('msg'))[:300]}{tail}"
    return ts, text
