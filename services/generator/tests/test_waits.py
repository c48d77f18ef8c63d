"""Waiting instead of failing, against the Runway simulator and real PostgreSQL.

Runway's daily cap and the organisation's credit balance hold generations back (``pending``,
``GenerationWaiting`` once per change of reason), they do not fail them. The checks are the
simulator's own counters: no create is sent while a model is capped or the credits are short.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runway_sim.settings import Settings as SimSettings
from runway_sim.testing import AsyncSimHandle, async_simulator, fast_scenario
from runway_sim.testkit import png_bytes
from vidgen_common.events import GenerationCancelRequested
from vidgen_generator import store
from vidgen_generator.holds import PRICES
from vidgen_generator.runway import SdkRunwayClient
from vidgen_runway.sdk import create_client
from vidgen_runway.settings import RunwaySettings

pytestmark = pytest.mark.integration

IMAGE = "images/u1/a.png"
COST = 25  # gen4_turbo, 5 s: 5 credits a second


@pytest.fixture(scope="module")
async def sim_server() -> AsyncIterator[AsyncSimHandle]:
    settings = SimSettings(render_height=16, render_fps=1, access_log=False, log_level="warning")
    async with async_simulator(settings, scenario=fast_scenario(seed=11)) as handle:
        yield handle


@pytest.fixture
async def sim(sim_server: AsyncSimHandle) -> AsyncSimHandle:
    await sim_server.reset()
    return sim_server


@pytest.fixture
async def on_sim(
    sim: AsyncSimHandle, make_generator_on: Any, fake_storage: Any
) -> AsyncIterator[Any]:
    """Makes a generator whose Runway is the simulator, through the SDK adapter."""
    fake_storage.objects[IMAGE] = png_bytes(32, 18)
    clients: list[SdkRunwayClient] = []

    def make(**settings: Any) -> Any:
        runway = RunwaySettings(runwayml_api_secret=sim.api_key, runwayml_base_url=sim.base_url)
        client = SdkRunwayClient(create_client(runway))
        clients.append(client)
        return make_generator_on(client, fake_storage, **settings)

    yield make
    for client in clients:
        await client.close()


async def _request(gen: Any, request_event: Any, gid: str, **fields: Any) -> None:
    gen.clock.advance(1)  # created_at orders the rows
    await gen.deliver(request_event(gid, image_key=IMAGE, **fields))


async def _waits(gen: Any) -> list[tuple[str, str, str | None]]:
    return [(e["generationId"], e["reason"], e.get("until")) for e in await gen.events("waiting")]


async def _states(gen: Any) -> dict[str, tuple[str, str | None]]:
    return {r["generation_id"]: (r["state"], r["wait_reason"]) for r in await gen.rows()}


def _creates(counters: dict[str, Any]) -> dict[str, int]:
    """Answers to ``POST /v1/image_to_video`` by HTTP status, as the simulator counted them."""
    calls: dict[str, int] = counters["calls"].get("create", {})
    return calls


def _waiting(gen: Any, reason: str) -> float:
    value: float = gen.metrics.waiting.labels(reason)._value.get()
    return value


async def test_the_daily_cap_holds_the_model_until_its_window_passes(
    on_sim: Any, sim: AsyncSimHandle, request_event: Any
) -> None:
    await sim.set_scenario({"org": {"models": {"gen4_turbo": {"max_daily": 2}}}})
    gen = on_sim(max_concurrent_submissions=1)
    for gid in ("g1", "g2", "g3"):
        await _request(gen, request_event, gid)
    for _ in range(3):
        await gen.pass_()
    states = await _states(gen)
    assert [states[g][0] for g in ("g1", "g2", "g3")] == ["submitted", "submitted", "pending"]
    assert states["g3"][1] == "daily_cap_reached"
    assert not await gen.events("failed")
    first = min(r["submitted_at"] for r in await gen.rows() if r["state"] == "submitted")
    until = first + timedelta(days=1)
    [(gid, reason, told)] = await _waits(gen)
    assert (gid, reason) == ("g3", "daily_cap_reached")
    assert told is not None
    assert datetime.fromisoformat(told) == until
    [g3] = [r for r in await gen.rows() if r["generation_id"] == "g3"]
    assert (g3["retry_at"], g3["wait_until"]) == (until, until)

    # Capped: a new request of that model waits too, and no create is sent for it.
    await _request(gen, request_event, "g4")
    for _ in range(3):
        gen.clock.advance(60)
        assert await gen.pass_() == 0
    assert _creates(await sim.counters()) == {"200": 2, "429": 1}
    assert await _waits(gen) == [
        ("g3", "daily_cap_reached", told),
        ("g4", "daily_cap_reached", told),
    ]
    assert _waiting(gen, "daily_cap_reached") == 2

    # The window passes (the simulator forgets the day's tasks): both go, one per pass.
    await sim.reset(keep_scenario=True)
    gen.clock.now = until + timedelta(seconds=1)
    assert await gen.pass_() == 1
    assert await gen.pass_() == 1
    states = await _states(gen)
    assert {states[g][0] for g in ("g3", "g4")} == {"submitted"}
    # g3 went in the pass that lifted the cap (TaskSubmitted ends its wait); g4 waited one
    # more pass for a free slot, which it was told once.
    assert await _waits(gen) == [
        ("g3", "daily_cap_reached", told),
        ("g4", "daily_cap_reached", told),
        ("g4", "waiting_for_capacity", None),
    ]
    assert _waiting(gen, "daily_cap_reached") == 0
    assert _creates(await sim.counters()) == {"200": 2}


async def test_a_pass_that_read_the_caps_before_a_refusal_keeps_that_row_held(
    on_sim: Any, sim: AsyncSimHandle, request_event: Any
) -> None:
    """A claim pass reads the held rows, then sets every row's reason in a later statement. A
    create refused for the cap in between commits its hold after the first read and before the
    second: that pass must not take the row for one released (a ``waiting_for_capacity`` the
    user would be told, and the cap forgotten by every replica)."""
    await sim.set_scenario({"org": {"models": {"gen4_turbo": {"max_daily": 0}}}})
    gen = on_sim()
    await _request(gen, request_event, "g1")
    assert await gen.pass_() == 1  # sent, refused for the cap: held
    assert _creates(await sim.counters()) == {"429": 1}
    [(_, reason, told)] = await _waits(gen)
    assert reason == "daily_cap_reached"
    async with gen.sessions() as session:  # what that pass does with the caps it read before
        changes = await store.sync_holds(
            session, gen.clock.now, caps={}, available=None, prices=PRICES, every_row=False
        )
        await session.commit()
    assert changes == []
    [g1] = await gen.rows()
    assert (g1["wait_reason"], g1["wait_until"]) == ("daily_cap_reached", _at(told))
    gen.clock.advance(60)
    assert await gen.pass_() == 0
    assert len(await _waits(gen)) == 1
    assert _creates(await sim.counters()) == {"429": 1}


def _at(told: str | None) -> datetime:
    assert told is not None
    return datetime.fromisoformat(told)


async def test_the_organizations_daily_usage_caps_a_model_before_any_create(
    on_sim: Any, sim: AsyncSimHandle, request_event: Any
) -> None:
    await sim.set_scenario({"org": {"models": {"gen4_turbo": {"max_daily": 0}}}})
    gen = on_sim(budget_from_organization=True, daily_cap_recheck_s=900)
    await _request(gen, request_event, "g1")
    assert await gen.pass_() == 0
    [(gid, reason, told)] = await _waits(gen)
    assert (gid, reason) == ("g1", "daily_cap_reached")
    assert told is not None
    assert datetime.fromisoformat(told) == gen.clock.now + timedelta(seconds=900)
    assert _creates(await sim.counters()) == {}
    assert (await _states(gen))["g1"] == ("pending", "daily_cap_reached")


async def test_short_credits_hold_rows_once_and_release_them_when_credits_return(
    on_sim: Any, sim: AsyncSimHandle, request_event: Any
) -> None:
    await sim.set_scenario({"org": {"credit_balance": COST - 1}})
    gen = on_sim()
    for gid in ("g1", "g2"):
        await _request(gen, request_event, gid)
    for _ in range(3):
        gen.clock.advance(1)
        assert await gen.pass_() == 0
    assert await _waits(gen) == [
        ("g1", "organization_out_of_credits", None),
        ("g2", "organization_out_of_credits", None),
    ]
    assert _waiting(gen, "organization_out_of_credits") == 2
    assert _creates(await sim.counters()) == {}
    assert (await _states(gen))["g1"] == ("pending", "organization_out_of_credits")

    # Enough for one: it goes (after the next read of the balance), the other keeps waiting.
    await sim.set_scenario({"org": {"credit_balance": COST + 1}})
    gen.clock.advance(gen.settings.organization_refresh_s)
    assert await gen.pass_() == 1
    assert _waiting(gen, "organization_out_of_credits") == 1
    await sim.set_scenario({"org": {"credit_balance": 10_000}})
    gen.clock.advance(gen.settings.organization_refresh_s)
    assert await gen.pass_() == 1
    assert {s for s, _ in (await _states(gen)).values()} == {"submitted"}
    assert len(await _waits(gen)) == 2  # no waiting_for_capacity: each went as it was freed
    assert _waiting(gen, "organization_out_of_credits") == 0
    assert _creates(await sim.counters()) == {"200": 2}


async def test_a_create_refused_for_credits_waits_instead_of_failing(
    on_sim: Any, sim: AsyncSimHandle, request_event: Any
) -> None:
    gen = on_sim(max_concurrent_submissions=1)
    await _request(gen, request_event, "g0")
    assert await gen.pass_() == 1  # the balance is read: plenty
    await sim.set_scenario({"org": {"credit_balance": COST - 1}})  # spent elsewhere meanwhile
    await _request(gen, request_event, "g1")
    await _request(gen, request_event, "g2")
    assert await gen.pass_() == 1
    assert _creates(await sim.counters()) == {"200": 1, "400": 1}
    assert await gen.pass_() == 0
    assert not await gen.events("failed")
    states = await _states(gen)
    assert states["g1"] == ("pending", "organization_out_of_credits")
    assert states["g2"] == ("pending", "organization_out_of_credits")
    # the refusal re-read the balance: the other row was held, not sent and refused too
    for _ in range(3):
        gen.clock.advance(1)
        assert await gen.pass_() == 0
    assert _creates(await sim.counters()) == {"200": 1, "400": 1}
    assert sorted(await _waits(gen)) == [
        ("g1", "organization_out_of_credits", None),
        ("g2", "organization_out_of_credits", None),
    ]
    await sim.set_scenario({"org": {"credit_balance": 10_000}})
    gen.clock.advance(gen.settings.organization_refresh_s)
    assert await gen.pass_() == 1
    assert await gen.pass_() == 1
    assert {s for s, _ in (await _states(gen)).values()} == {"submitted"}
    assert not await gen.events("failed")


async def test_a_held_row_can_be_cancelled(
    on_sim: Any, sim: AsyncSimHandle, request_event: Any
) -> None:
    await sim.set_scenario({"org": {"credit_balance": 0}})
    gen = on_sim()
    await _request(gen, request_event, "g1")
    assert await gen.pass_() == 0
    await gen.deliver(
        GenerationCancelRequested(generation_id="g1", user_id="u1", requested_at=datetime.now(UTC))
    )
    assert (await _states(gen))["g1"][0] == "cancelled"
    assert [e["generationId"] for e in await gen.events("cancelled")] == ["g1"]
    await sim.set_scenario({"org": {"credit_balance": 10_000}})
    gen.clock.advance(gen.settings.organization_refresh_s)
    assert await gen.pass_() == 0
    assert _creates(await sim.counters()) == {}
    assert _waiting(gen, "organization_out_of_credits") == 0
