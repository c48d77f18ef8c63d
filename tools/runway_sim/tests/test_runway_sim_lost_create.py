"""The paid-twice hazard: Runway created the task but the create response never arrived."""

from __future__ import annotations

import pytest
import runwayml
from runwayml import AsyncRunwayML, RunwayML

from runway_sim.testing import SimHandle


def test_sdk_retry_after_lost_response_creates_a_second_task(
    sim: SimHandle, image_uri: str
) -> None:
    sim.set_scenario({"lost_create": {"next_n": 1, "mode": "hang", "hang_s": 10}})
    with RunwayML(base_url=sim.base_url, api_key=sim.api_key, timeout=0.5) as client:
        task = client.image_to_video.create(
            model="gen4_turbo", prompt_image=image_uri, ratio="1280:720", duration=2
        )
    counters = sim.counters()
    assert counters["creates_accepted"] == 2  # two paid tasks for one intended generation
    assert counters["calls"]["create"] == {"lost": 1, "200": 1}
    assert counters["credits_charged"] == 20
    assert counters["faults"] == {"lost_create_hang": 1}
    assert task.id


def test_no_retries_raises_timeout_with_one_task(sim: SimHandle, image_uri: str) -> None:
    sim.set_scenario({"lost_create": {"next_n": 1, "mode": "hang", "hang_s": 10}})
    with (
        RunwayML(base_url=sim.base_url, api_key=sim.api_key, timeout=0.5, max_retries=0) as client,
        pytest.raises(runwayml.APITimeoutError),
    ):
        client.image_to_video.create(model="gen4_turbo", prompt_image=image_uri, ratio="1280:720")
    counters = sim.counters()
    assert counters["creates_accepted"] == 1
    assert counters["tasks_by_status"] in ({"PENDING": 1}, {"RUNNING": 1}, {"SUCCEEDED": 1})


async def test_dropped_connection_raises_connection_error(sim: SimHandle, image_uri: str) -> None:
    sim.set_scenario({"lost_create": {"next_n": 1, "mode": "drop"}})
    async with AsyncRunwayML(base_url=sim.base_url, api_key=sim.api_key, max_retries=0) as client:
        with pytest.raises(runwayml.APIConnectionError) as err:
            await client.image_to_video.create(
                model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
            )
        assert not isinstance(err.value, runwayml.APITimeoutError)
        # the same client keeps working afterwards
        org = await client.organization.retrieve()
    assert org.usage.models["gen4_turbo"].daily_generations == 1
    assert sim.counters()["creates_accepted"] == 1


def test_late_response_is_delivered_if_the_client_waits(sim: SimHandle, image_uri: str) -> None:
    sim.set_scenario({"lost_create": {"next_n": 1, "mode": "hang", "hang_s": 0.3}})
    with RunwayML(base_url=sim.base_url, api_key=sim.api_key, timeout=5, max_retries=0) as client:
        task = client.image_to_video.create(
            model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
        )
    assert task.id
    assert sim.counters()["creates_accepted"] == 1
