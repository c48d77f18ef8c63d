"""Organization endpoint, admin API, latency knob and the test helpers themselves."""

from __future__ import annotations

import time

import httpx
from runwayml import AsyncRunwayML, RunwayML

from runway_sim.scenario import fast_scenario
from runway_sim.settings import DEFAULT_API_KEY
from runway_sim.testing import SimHandle, async_simulator, simulator


def test_organization_shape_and_usage(sim: SimHandle, client: RunwayML, image_uri: str) -> None:
    before = client.organization.retrieve()
    assert before.tier.max_monthly_credit_spend > 0
    assert set(before.tier.models) >= {"gen4_turbo", "gen4.5", "veo3.1", "veo3.1_fast"}
    assert before.tier.models["gen4_turbo"].max_concurrent_generations == 3
    client.image_to_video.create(
        model="gen4.5", prompt_image=image_uri, prompt_text="x", ratio="960:960", duration=5
    )
    after = client.organization.retrieve()
    assert after.credit_balance == before.credit_balance - 60  # 12 credits/s
    assert after.usage.models["gen4.5"].daily_generations == 1


def test_scenario_put_merges_validates_and_reset_restores(sim: SimHandle) -> None:
    original = sim.scenario()
    merged = sim.set_scenario({"org": {"models": {"gen4_turbo": {"max_concurrent": 1}}}})
    assert merged["org"]["models"]["gen4_turbo"]["max_concurrent"] == 1
    assert merged["org"]["models"]["veo3.1"] == original["org"]["models"]["veo3.1"]
    bad = httpx.put(f"{sim.base_url}/_sim/scenario", json={"time_scale": -1})
    assert bad.status_code == 422
    unknown = httpx.put(f"{sim.base_url}/_sim/scenario", json={"no_such_knob": 1})
    assert unknown.status_code == 422
    sim.reset()
    assert sim.scenario() == original


def test_counters_track_retrieves_per_task(
    sim: SimHandle, client: RunwayML, image_uri: str
) -> None:
    task = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
    )
    for _ in range(3):
        client.tasks.retrieve(task.id)
    counters = sim.counters()
    assert counters["retrieves_per_task"] == {task.id: 3}
    assert counters["calls"]["retrieve"] == {"200": 3}
    assert counters["creates_by_model"] == {"gen4_turbo": 1}


def test_added_latency(sim: SimHandle, client: RunwayML) -> None:
    sim.set_scenario({"latency": {"rate": 1.0, "seconds": 0.3, "endpoints": ["organization"]}})
    started = time.monotonic()
    client.organization.retrieve()
    assert time.monotonic() - started >= 0.3
    assert sim.counters()["faults"] == {"latency": 1}


async def test_async_simulator_helper(image_uri: str) -> None:
    async with async_simulator(scenario=fast_scenario(run_s=0.05)) as sim:
        assert sim.api_key == DEFAULT_API_KEY
        async with AsyncRunwayML(base_url=sim.base_url, api_key=sim.api_key) as client:
            task = await client.image_to_video.create(
                model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
            )
            done = await task.wait_for_task_output(timeout=10)
        assert done.status == "SUCCEEDED"
        assert (await sim.counters())["final_statuses"] == {"SUCCEEDED": 1}
        await sim.set_scenario({"moderation_words": ["x"]})
        await sim.reset()
        assert (await sim.counters())["creates_accepted"] == 0
        assert (await sim.scenario())["moderation_words"] == []


def test_subprocess_mode() -> None:
    with simulator(scenario={"org": {"credit_balance": 1234}}, mode="process") as sim:
        with RunwayML(base_url=sim.base_url, api_key=sim.api_key) as client:
            assert client.organization.retrieve().credit_balance == 1234
        assert sim.counters()["calls"]["organization"] == {"200": 1}
