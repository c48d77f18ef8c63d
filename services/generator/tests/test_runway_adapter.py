"""The generator's SDK adapter against the Runway simulator: what a create's answer proves.

Only answers proving that nothing was created may be retried (``retry``/``permanent``); every
other answer to a create (a 500, a 504, a read timeout, a cut connection, a body that cannot be
read) must be ``unknown``: Runway may hold a paid task.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runway_sim.settings import Settings as SimSettings
from runway_sim.testing import AsyncSimHandle, async_simulator, fast_scenario
from runway_sim.testkit import data_uri, png_bytes
from vidgen_generator.runway import CreateRequest, SdkRunwayClient
from vidgen_runway.errors import RunwayCallError
from vidgen_runway.sdk import create_client
from vidgen_runway.settings import RunwaySettings
from vidgen_runway.verdicts import Verdict


@pytest.fixture(scope="module")
async def sim_server() -> AsyncIterator[AsyncSimHandle]:
    settings = SimSettings(render_height=16, render_fps=1, access_log=False, log_level="warning")
    async with async_simulator(settings, scenario=fast_scenario(seed=7)) as handle:
        yield handle


@pytest.fixture
async def sim(sim_server: AsyncSimHandle) -> AsyncSimHandle:
    await sim_server.reset()
    return sim_server


def _request() -> CreateRequest:
    return CreateRequest(
        model="gen4_turbo",
        prompt_image=data_uri(png_bytes(32, 18)),
        prompt_text="a lake",
        ratio="1280:720",
        duration=5,
    )


async def _create(base_url: str, api_key: str, timeout_s: float = 5.0) -> Any:
    settings = RunwaySettings(
        runwayml_api_secret=api_key, runwayml_base_url=base_url, runway_timeout_s=timeout_s
    )
    client = SdkRunwayClient(create_client(settings))
    try:
        return await client.create(_request())
    finally:
        await client.close()


async def _verdict(sim: AsyncSimHandle, timeout_s: float = 5.0) -> tuple[Verdict, str]:
    with pytest.raises(RunwayCallError) as err:
        await _create(sim.base_url, sim.api_key, timeout_s)
    c = err.value.classified
    return c.verdict, c.code


@pytest.mark.parametrize("mode", ["500", "504", "broken_body"])
async def test_an_error_after_the_task_was_created_is_unknown(
    sim: AsyncSimHandle, mode: str
) -> None:
    await sim.set_scenario({"create_then_error": {"next_n": 1, "mode": mode}})
    verdict, _ = await _verdict(sim)
    assert verdict is Verdict.UNKNOWN
    assert (await sim.counters())["creates_accepted"] == 1  # and Runway did create it


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(500, Verdict.UNKNOWN), (504, Verdict.UNKNOWN), (502, Verdict.RETRY), (503, Verdict.RETRY)],
)
async def test_5xx_only_502_and_503_are_load_shedding(
    sim: AsyncSimHandle, status: int, verdict: Verdict
) -> None:
    await sim.set_scenario({"server_errors": {"next_n": 1, "status": status}})
    assert (await _verdict(sim))[0] is verdict


async def test_lost_answers_are_unknown(sim: AsyncSimHandle) -> None:
    await sim.set_scenario({"lost_create": {"next_n": 1, "mode": "hang", "hang_s": 5}})
    assert await _verdict(sim, timeout_s=0.5) == (Verdict.UNKNOWN, "runway_no_response")
    await sim.set_scenario({"lost_create": {"next_n": 1, "mode": "drop"}})
    assert await _verdict(sim) == (Verdict.UNKNOWN, "runway_no_response")


async def test_proofs_that_nothing_was_created(sim: AsyncSimHandle) -> None:
    await sim.set_scenario({"rate_limit": {"next_n": 1, "retry_after_s": 0.1}})
    assert await _verdict(sim) == (Verdict.RETRY, "runway_rate_limited")
    await sim.set_scenario({"org": {"models": {"gen4_turbo": {"max_daily": 0}}}})
    assert await _verdict(sim) == (Verdict.PERMANENT, "runway_daily_limit")
    assert await _verdict_with_key(sim, "key_wrong") == (Verdict.PERMANENT, "runway_auth")
    assert (await sim.counters())["creates_accepted"] == 0


async def _verdict_with_key(sim: AsyncSimHandle, key: str) -> tuple[Verdict, str]:
    with pytest.raises(RunwayCallError) as err:
        await _create(sim.base_url, key)
    return err.value.classified.verdict, err.value.classified.code


async def test_a_connection_never_made_is_retried() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RunwayCallError) as err:
        await _create(f"http://127.0.0.1:{port}", "key_any")
    assert (err.value.classified.verdict, err.value.classified.code) == (
        Verdict.RETRY,
        "runway_unreachable",
    )
