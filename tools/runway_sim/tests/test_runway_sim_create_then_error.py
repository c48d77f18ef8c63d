"""Runway created (and charged) the task, then answered an error: 500, 504 or a cut body."""

from __future__ import annotations

import json

import httpx
import pytest
import runwayml
from runwayml import AsyncRunwayML, RunwayML

from runway_sim.testing import SimHandle


@pytest.mark.parametrize(("mode", "status"), [("500", 500), ("504", 504)])
async def test_a_5xx_after_the_create_leaves_a_paid_task(
    sim: SimHandle, image_uri: str, mode: str, status: int
) -> None:
    sim.set_scenario({"create_then_error": {"next_n": 1, "mode": mode}})
    async with AsyncRunwayML(base_url=sim.base_url, api_key=sim.api_key, max_retries=0) as client:
        with pytest.raises(runwayml.InternalServerError) as err:
            await client.image_to_video.create(
                model="gen4_turbo", prompt_image=image_uri, ratio="1280:720", duration=5
            )
        org = await client.organization.retrieve()
    assert err.value.status_code == status
    if mode == "504":
        assert "504 Gateway Time-out" in str(err.value.body)
    else:
        assert err.value.body == {"error": "An unexpected error occurred."}
    counters = sim.counters()
    assert counters["creates_accepted"] == 1
    assert counters["calls"]["create"] == {str(status): 1}
    assert counters["credits_charged"] == 25
    assert counters["faults"] == {f"create_then_error_{mode}": 1}
    assert org.usage.models["gen4_turbo"].daily_generations == 1


def test_a_cut_body_cannot_be_read_by_the_sdk(sim: SimHandle, image_uri: str) -> None:
    sim.set_scenario({"create_then_error": {"next_n": 1, "mode": "broken_body"}})
    with (
        RunwayML(base_url=sim.base_url, api_key=sim.api_key, max_retries=0) as client,
        pytest.raises(json.JSONDecodeError),
    ):
        client.image_to_video.create(model="gen4_turbo", prompt_image=image_uri, ratio="1280:720")
    counters = sim.counters()
    assert counters["creates_accepted"] == 1
    assert counters["calls"]["create"] == {"200": 1}
    assert counters["faults"] == {"create_then_error_broken_body": 1}


def test_the_sdks_own_retries_pay_for_each_5xx(sim: SimHandle, image_uri: str) -> None:
    sim.set_scenario({"create_then_error": {"next_n": 2, "mode": "500"}})
    with RunwayML(base_url=sim.base_url, api_key=sim.api_key) as client:  # max_retries=2
        task = client.image_to_video.create(
            model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
        )
    counters = sim.counters()
    assert task.id
    assert counters["creates_accepted"] == 3  # three paid tasks for one intended generation
    assert counters["calls"]["create"] == {"500": 2, "200": 1}


def test_a_rate_and_the_scenario_countdown(sim: SimHandle, image_uri: str) -> None:
    sim.set_scenario({"create_then_error": {"rate": 1.0, "mode": "504"}})
    assert sim.scenario()["create_then_error"] == {"next_n": 0, "rate": 1.0, "mode": "504"}
    with RunwayML(base_url=sim.base_url, api_key=sim.api_key, max_retries=0) as client:
        for _ in range(2):
            with pytest.raises(runwayml.InternalServerError):
                client.image_to_video.create(
                    model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
                )
        assert client.organization.retrieve().credit_balance > 0  # other calls: untouched
    sim.set_scenario({"create_then_error": {"rate": 0.0}})
    counters = sim.counters()
    assert counters["faults"] == {"create_then_error_504": 2}
    assert counters["creates_accepted"] == 2


def test_invalid_rules_are_refused(sim: SimHandle) -> None:
    bad = httpx.put(f"{sim.base_url}/_sim/scenario", json={"create_then_error": {"mode": "502"}})
    assert bad.status_code == 422
