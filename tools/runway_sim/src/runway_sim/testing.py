"""Run a simulator for the duration of a test (or a benchmark).

    from runwayml import RunwayML
    from runway_sim.testing import fast_scenario, simulator

    with simulator(scenario=fast_scenario()) as sim:          # free loopback port, ready
        client = RunwayML(base_url=sim.base_url, api_key=sim.api_key)
        sim.set_scenario({"moderation_words": ["forbidden"]})  # merge knobs at runtime
        ...
        assert sim.counters()["creates_accepted"] == 1
        sim.reset()                                            # fresh tasks/counters/scenario

`async with async_simulator(...) as sim:` is the same with awaitable methods. By default the
server runs in a background thread of this process (uvicorn with its own event loop);
`mode="process"` runs `python -m runway_sim` in a subprocess instead (no GIL sharing with the
test, e.g. for load tests). `scenario` is merged over `settings.scenario` and becomes the
scenario that `reset()` restores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, Protocol

import httpx

from runway_sim.scenario import fast_scenario, merged
from runway_sim.server import build_server
from runway_sim.settings import Settings

__all__ = ["AsyncSimHandle", "SimHandle", "async_simulator", "fast_scenario", "simulator"]

Mode = Literal["thread", "process"]
LOOPBACK = "127.0.0.1"


class _Runner(Protocol):
    base_url: str

    def start(self, ready_timeout_s: float) -> None: ...
    def stop(self) -> None: ...


def _wait_ready(base_url: str, alive: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if not alive():
                raise RuntimeError("the Runway simulator exited during startup")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{base_url}/_sim/health").status_code == 200:
                    return
            threading.Event().wait(0.02)
    raise TimeoutError(f"the Runway simulator at {base_url} was not ready in {timeout_s}s")


class _ThreadRunner:
    def __init__(self, settings: Settings) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, 0))
        port = self._sock.getsockname()[1]
        self.base_url = f"http://{LOOPBACK}:{port}"
        self._server = build_server(settings.model_copy(update={"host": LOOPBACK, "port": port}))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name="runway-sim",
            daemon=True,
        )

    def start(self, ready_timeout_s: float) -> None:
        self._thread.start()
        _wait_ready(self.base_url, self._thread.is_alive, ready_timeout_s)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """`RUNWAY_SIM_*` variables reproducing `settings` in another process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            text = value if isinstance(value, str) else json.dumps(value)
            env[f"RUNWAY_SIM_{name.upper()}"] = text
    return env


class _ProcessRunner:
    def __init__(self, settings: Settings) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
        self.base_url = f"http://{LOOPBACK}:{port}"
        self._settings = settings.model_copy(update={"host": LOOPBACK, "port": port})
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWAY_SIM_")}
        env.update(settings_env(self._settings))
        self._proc = subprocess.Popen([sys.executable, "-m", "runway_sim"], env=env)
        proc = self._proc
        _wait_ready(self.base_url, lambda: proc.poll() is None, ready_timeout_s)

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _runner(settings: Settings | None, scenario: dict[str, Any] | None, mode: Mode) -> _Runner:
    base = settings if settings is not None else Settings(access_log=False, log_level="warning")
    if scenario:
        base = base.model_copy(update={"scenario": merged(base.scenario, scenario)})
    return _ThreadRunner(base) if mode == "thread" else _ProcessRunner(base)


class SimHandle:
    """A running simulator: `base_url` and `api_key` for the SDK, plus the admin API."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self._http = httpx.Client(base_url=base_url, timeout=10.0)

    def set_scenario(self, patch: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        """Merge `patch` into the scenario (or replace it); returns the resulting scenario."""
        response = self._http.put("/_sim/scenario", json=patch, params={"replace": replace})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def scenario(self) -> dict[str, Any]:
        result: dict[str, Any] = self._http.get("/_sim/scenario").raise_for_status().json()
        return result

    def counters(self) -> dict[str, Any]:
        result: dict[str, Any] = self._http.get("/_sim/counters").raise_for_status().json()
        return result

    def task_timeline(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._http.get(f"/_sim/tasks/{task_id}").raise_for_status().json()
        return result

    def tasks(self) -> list[dict[str, Any]]:
        """Every task created since the last reset (`GET /_sim/tasks`)."""
        result: list[dict[str, Any]] = self._http.get("/_sim/tasks").raise_for_status().json()
        return result

    def reset(self, *, keep_scenario: bool = False) -> None:
        self._http.post("/_sim/reset", params={"keep_scenario": keep_scenario}).raise_for_status()

    def close(self) -> None:
        self._http.close()


class AsyncSimHandle:
    """`SimHandle` with awaitable admin calls."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self._http = httpx.AsyncClient(base_url=base_url, timeout=10.0)

    async def set_scenario(self, patch: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        response = await self._http.put("/_sim/scenario", json=patch, params={"replace": replace})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def scenario(self) -> dict[str, Any]:
        result: dict[str, Any] = (await self._http.get("/_sim/scenario")).raise_for_status().json()
        return result

    async def counters(self) -> dict[str, Any]:
        result: dict[str, Any] = (await self._http.get("/_sim/counters")).raise_for_status().json()
        return result

    async def task_timeline(self, task_id: str) -> dict[str, Any]:
        response = await self._http.get(f"/_sim/tasks/{task_id}")
        result: dict[str, Any] = response.raise_for_status().json()
        return result

    async def reset(self, *, keep_scenario: bool = False) -> None:
        response = await self._http.post("/_sim/reset", params={"keep_scenario": keep_scenario})
        response.raise_for_status()

    async def aclose(self) -> None:
        await self._http.aclose()


def _api_key(settings: Settings | None) -> str:
    return (settings if settings is not None else Settings()).first_key


@contextlib.contextmanager
def simulator(
    settings: Settings | None = None,
    *,
    scenario: dict[str, Any] | None = None,
    mode: Mode = "thread",
    ready_timeout_s: float = 30.0,
) -> Iterator[SimHandle]:
    """A simulator on a free loopback port, ready when entered, stopped on exit."""
    runner = _runner(settings, scenario, mode)
    runner.start(ready_timeout_s)
    handle = SimHandle(runner.base_url, _api_key(settings))
    try:
        yield handle
    finally:
        handle.close()
        runner.stop()


@contextlib.asynccontextmanager
async def async_simulator(
    settings: Settings | None = None,
    *,
    scenario: dict[str, Any] | None = None,
    mode: Mode = "thread",
    ready_timeout_s: float = 30.0,
) -> AsyncIterator[AsyncSimHandle]:
    """`simulator` for async code: startup and shutdown do not block the event loop."""
    runner = _runner(settings, scenario, mode)
    await asyncio.to_thread(runner.start, ready_timeout_s)
    handle = AsyncSimHandle(runner.base_url, _api_key(settings))
    try:
        yield handle
    finally:
        await handle.aclose()
        await asyncio.to_thread(runner.stop)
