"""Fixtures: one simulator (in a thread) for the session, reset before every test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import runwayml.lib.polling
from runwayml import AsyncRunwayML, RunwayML

from runway_sim.testing import SimHandle, fast_scenario, simulator
from runway_sim.testkit import data_uri, png_bytes


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimHandle]:
    with simulator(scenario=fast_scenario(seed=1234)) as sim:
        yield sim


@pytest.fixture
def sim(sim_server: SimHandle) -> SimHandle:
    """The session's simulator with fresh state and the fast startup scenario."""
    sim_server.reset()
    return sim_server


@pytest.fixture(autouse=True)
def fast_sdk_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """`wait_for_task_output` sleeps POLL_TIME ± POLL_JITTER/2 (6 s ± 1.5 s) between polls."""
    monkeypatch.setattr(runwayml.lib.polling, "POLL_TIME", 0.05)
    monkeypatch.setattr(runwayml.lib.polling, "POLL_JITTER", 0.0)


@pytest.fixture
def client(sim: SimHandle) -> Iterator[RunwayML]:
    with RunwayML(base_url=sim.base_url, api_key=sim.api_key) as c:
        yield c


@pytest.fixture
async def aclient(sim: SimHandle) -> AsyncIterator[AsyncRunwayML]:
    async with AsyncRunwayML(base_url=sim.base_url, api_key=sim.api_key) as c:
        yield c


@pytest.fixture(scope="session")
def image() -> bytes:
    return png_bytes()


@pytest.fixture(scope="session")
def image_uri(image: bytes) -> str:
    return data_uri(image)
