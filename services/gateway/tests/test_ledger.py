"""The credit ledger on real PostgreSQL: estimates reserved at admission against daily and
monthly budgets (402 when they do not fit, atomically under concurrency), settled to Runway's
cost by the projection, usage private to each user, budgets only for administrators."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from vidgen_common.db import run_sql
from vidgen_common.events import Envelope, EventData, GenerationCancelled
from vidgen_common.runtime import ServiceRuntime
from vidgen_gateway import ledger, store
from vidgen_gateway.auth import mint_dev_token
from vidgen_gateway.bootstrap import Gateway
from vidgen_gateway.settings import GatewaySettings
from vidgen_runway.catalog import MODELS

pytestmark = pytest.mark.integration

Auth = Callable[[str], dict[str, str]]
PRICE = MODELS["gen4_turbo"].credits(5)  # the default model and duration


@pytest.fixture
def settings(settings: GatewaySettings) -> GatewaySettings:
    """No in-flight or rate limit in the way: only the budgets decide."""
    return settings.model_copy(update={"max_in_flight_per_user": 1000, "generate_rate_limit": 1000})


@pytest.fixture
def admin(settings: GatewaySettings) -> dict[str, str]:
    token = mint_dev_token(settings, "ops-1", roles=(settings.admin_role,))
    return {"Authorization": f"Bearer {token}"}


async def put_budget(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    user: str,
    daily: int | None,
    monthly: int | None,
) -> None:
    r = await client.put(
        f"/api/admin/budgets/{user}",
        json={"dailyCredits": daily, "monthlyCredits": monthly},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "override"


async def usage(client: httpx.AsyncClient, auth: Auth, user: str) -> dict[str, Any]:
    r = await client.get("/api/usage", headers=auth(user))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def period(body: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in body["periods"] if p["period"] == name)
    return found


async def test_50_parallel_requests_against_a_budget_of_10_generations_accept_exactly_10(
    client: httpx.AsyncClient, auth: Auth, admin: dict[str, str], upload: Any
) -> None:
    user = f"racer-{uuid.uuid4().hex[:6]}"
    await put_budget(client, admin, user, 10 * PRICE, None)
    project = (await upload(user))["projectId"]
    body = {"projectId": project, "prompt": "a fox crossing a frozen river"}

    async def one() -> httpx.Response:
        return await client.post("/api/videos/generate", json=body, headers=auth(user))

    answers = await asyncio.gather(*(one() for _ in range(50)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(202) == 10, codes
    assert codes.count(402) == 40, codes
    assert all(r.json()["estimatedCostCredits"] == PRICE for r in answers if r.status_code == 202)
    day = period(await usage(client, auth, user), "day")
    assert (day["reservedCredits"], day["spentCredits"], day["remainingCredits"]) == (
        10 * PRICE,
        0,
        0,
    )


async def test_the_conditional_reservation_alone_never_overruns_a_budget(
    runtime: ServiceRuntime, upload: Any
) -> None:
    """Without the per-user advisory lock (concurrent sessions straight on the store), the
    reservation's conditional upsert still admits exactly as many as fit."""
    user = f"nolock-{uuid.uuid4().hex[:6]}"
    project = await upload(user)
    async with runtime.sessions() as s:
        row = (
            await run_sql(
                s,
                "SELECT image_key, content_type FROM projects WHERE id = :p",
                {"p": project["projectId"]},
            )
        ).one()
    now = datetime.now(UTC)
    periods = ledger.period_starts(now)

    async def one() -> bool:
        async with runtime.sessions() as s:
            gid = str(uuid.uuid4())
            await run_sql(
                s,
                "INSERT INTO generations (id, user_id, project_id, prompt, model, ratio, "
                "duration, image_key, image_content_type, created_at, updated_at) VALUES "
                "(:id, :u, :p, 'p', 'gen4_turbo', '1280:720', 5, :k, :ct, :now, :now)",
                {
                    "id": gid,
                    "u": user,
                    "p": project["projectId"],
                    "k": row.image_key,
                    "ct": row.content_type,
                    "now": now,
                },
            )
            booked = await store.reserve(
                s,
                generation_id=gid,
                user_id=user,
                estimate=PRICE,
                periods=periods,
                default_budgets={ledger.DAY: 10 * PRICE, ledger.MONTH: 12 * PRICE},
            )
            if booked.reserved:
                await s.commit()
            else:
                await s.rollback()
            return booked.reserved

    results = await asyncio.gather(*(one() for _ in range(50)))
    assert sum(results) == 10
    async with runtime.sessions() as s:
        found = await run_sql(s, "SELECT count(*) FROM generations WHERE user_id = :u", {"u": user})
        count = found.scalar_one()
    assert count == 10


async def test_over_budget_answers_402_with_the_figures_and_creates_nothing(
    client: httpx.AsyncClient, auth: Auth, admin: dict[str, str], generate: Any, upload: Any
) -> None:
    user = f"spender-{uuid.uuid4().hex[:6]}"
    await put_budget(client, admin, user, None, PRICE + PRICE // 2)
    await generate(user)
    project = (await upload(user))["projectId"]
    r = await client.post(
        "/api/videos/generate",
        json={"projectId": project, "prompt": "one too many"},
        headers=auth(user),
    )
    assert r.status_code == 402, r.text
    error = r.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "monthly" in error["message"]
    details = error["details"]
    assert details["period"] == "month"
    assert details["budgetCredits"] == PRICE + PRICE // 2
    assert details["spentCredits"] == 0
    assert details["reservedCredits"] == PRICE
    assert details["remainingCredits"] == PRICE // 2
    assert details["estimatedCostCredits"] == PRICE
    resets = datetime.fromisoformat(details["resetsAt"])
    assert resets > datetime.now(UTC)
    assert (resets.day, resets.hour) == (1, 0)
    listed = await client.get("/api/videos", headers=auth(user))
    assert len(listed.json()["items"]) == 1


async def test_an_idempotent_replay_never_reserves_twice(
    client: httpx.AsyncClient, auth: Auth, upload: Any
) -> None:
    user = f"retry-{uuid.uuid4().hex[:6]}"
    project = (await upload(user))["projectId"]
    body = {"projectId": project, "prompt": "again and again"}
    headers = {**auth(user), "Idempotency-Key": "k-1"}
    first = await client.post("/api/videos/generate", json=body, headers=headers)
    again = await client.post("/api/videos/generate", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert first.json()["estimatedCostCredits"] == PRICE
    assert period(await usage(client, auth, user), "day")["reservedCredits"] == PRICE


async def test_settlement_books_real_costs_refunds_and_cancels_exactly_once(
    client: httpx.AsyncClient,
    auth: Auth,
    generate: Any,
    feed: Callable[[EventData], Awaitable[Envelope[EventData]]],
    gateway: Gateway,
    downstream: Any,
) -> None:
    user = f"settle-{uuid.uuid4().hex[:6]}"
    done, refused, cancelled, late = [await generate(user) for _ in range(4)]
    view = (await client.get(f"/api/videos/status/{done}", headers=auth(user))).json()
    assert view["estimatedCostCredits"] == PRICE
    assert view["settledCostCredits"] is None

    ok = downstream(done, user)
    await feed(ok.submitted())
    await feed(ok.ready(cost=PRICE))
    envelope = await feed(ok.completed(cost=PRICE))
    await gateway.handlers.on_event(envelope)  # redelivered: the inbox drops it

    await feed(downstream(refused, user, "task-2").failed())  # cost 0: refunded

    await feed(
        GenerationCancelled(
            generation_id=cancelled,
            stage="poller",
            runway_task_id="task-3",
            cost_credits=7,  # cancelled while running: charged
            cancelled_at=datetime.now(UTC),
        )
    )

    # out of order: media's failure (no cost) before the poller's VideoReady (charged)
    slow = downstream(late, user, "task-4")
    failure = slow.failed(code="invalid_video", message="not playable")
    await feed(failure.model_copy(update={"cost_credits": None, "stage": "media"}))
    mid = period(await usage(client, auth, user), "day")
    assert (mid["spentCredits"], mid["reservedCredits"]) == (PRICE + 7, 0)
    await feed(slow.ready(cost=PRICE))

    body = await usage(client, auth, user)
    day, month = period(body, "day"), period(body, "month")
    expected = PRICE + 0 + 7 + PRICE
    assert (day["spentCredits"], day["reservedCredits"]) == (expected, 0)
    assert (month["spentCredits"], month["reservedCredits"]) == (expected, 0)
    assert (day["budgetCredits"], day["remainingCredits"]) == (None, None)
    assert body["byModel"] == [
        {"model": "gen4_turbo", "generations": 4, "spentCredits": expected, "reservedCredits": 0}
    ]
    assert [d["spentCredits"] for d in body["byDay"]] == [expected]
    settled = {
        gid: (await client.get(f"/api/videos/status/{gid}", headers=auth(user))).json()[
            "settledCostCredits"
        ]
        for gid in (done, refused, cancelled, late)
    }
    assert settled == {done: PRICE, refused: 0, cancelled: 7, late: PRICE}


async def test_a_cancel_before_runway_releases_the_whole_reservation(
    client: httpx.AsyncClient, auth: Auth, generate: Any, feed: Any
) -> None:
    user = f"early-{uuid.uuid4().hex[:6]}"
    gid = await generate(user)
    r = await client.post(f"/api/videos/{gid}/cancel", headers=auth(user))
    assert r.status_code == 202
    await feed(
        GenerationCancelled(generation_id=gid, stage="generator", cancelled_at=datetime.now(UTC))
    )
    day = period(await usage(client, auth, user), "day")
    assert (day["spentCredits"], day["reservedCredits"]) == (0, 0)


async def test_usage_is_private_to_each_user(
    client: httpx.AsyncClient, auth: Auth, generate: Any
) -> None:
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    await generate(alice)
    await generate(alice)
    mine = await usage(client, auth, alice)
    theirs = await usage(client, auth, bob)
    assert (mine["userId"], period(mine, "day")["reservedCredits"]) == (alice, 2 * PRICE)
    assert (theirs["userId"], period(theirs, "day")["reservedCredits"]) == (bob, 0)
    assert (theirs["byModel"], theirs["byDay"]) == ([], [])
    # no way to name another user: a userId parameter is not one of /api/usage's
    other = await client.get(f"/api/usage?userId={alice}", headers=auth(bob))
    assert (other.status_code, other.json()["userId"]) == (200, bob)
    assert period(other.json(), "day")["reservedCredits"] == 0
    assert (await client.get("/api/usage")).status_code == 401


async def test_admin_endpoints_refuse_normal_tokens_and_serve_admins(
    client: httpx.AsyncClient, auth: Auth, admin: dict[str, str], generate: Any
) -> None:
    user = f"target-{uuid.uuid4().hex[:6]}"
    await generate(user)
    calls = [
        ("GET", f"/api/admin/budgets/{user}", None),
        ("PUT", f"/api/admin/budgets/{user}", {"dailyCredits": 1, "monthlyCredits": 1}),
        ("DELETE", f"/api/admin/budgets/{user}", None),
        ("GET", f"/api/admin/usage?userId={user}", None),
    ]
    for method, path, body in calls:
        for headers in (auth(user), auth("someone-else")):
            r = await client.request(method, path, json=body, headers=headers)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"]["code"] == "forbidden"
        assert (await client.request(method, path, json=body)).status_code == 401
    got = await client.get(f"/api/admin/budgets/{user}", headers=admin)
    assert got.json()["source"] == "default"  # the refused PUT changed nothing
    await put_budget(client, admin, user, 100, None)
    got = (await client.get(f"/api/admin/budgets/{user}", headers=admin)).json()
    assert (got["dailyCredits"], got["monthlyCredits"], got["updatedBy"]) == (100, None, "ops-1")
    seen = await client.get(f"/api/admin/usage?userId={user}", headers=admin)
    assert seen.status_code == 200
    assert seen.json()["budgetSource"] == "override"
    assert period(seen.json(), "day")["reservedCredits"] == PRICE
    assert period(seen.json(), "day")["remainingCredits"] == 100 - PRICE
    assert (await client.delete(f"/api/admin/budgets/{user}", headers=admin)).status_code == 204
    assert (await client.delete(f"/api/admin/budgets/{user}", headers=admin)).status_code == 404


async def test_default_budgets_come_from_the_settings(
    settings: GatewaySettings,
    runtime: ServiceRuntime,
    storage: Any,
    auth: Auth,
    image: Callable[..., bytes],
) -> None:
    from vidgen_gateway.bootstrap import bootstrap

    cfg = settings.model_copy(
        update={"budget_daily_credits": PRICE, "budget_monthly_credits": None}
    )
    gw = bootstrap(runtime, cfg)
    transport = httpx.ASGITransport(app=gw.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as c:
        user = f"dflt-{uuid.uuid4().hex[:6]}"
        files = {"file": ("p.png", image(), "image/png")}
        project = (await c.post("/api/images/upload", files=files, headers=auth(user))).json()
        body = {"projectId": project["projectId"], "prompt": "x"}
        first = await c.post("/api/videos/generate", json=body, headers=auth(user))
        second = await c.post("/api/videos/generate", json=body, headers=auth(user))
        assert (first.status_code, second.status_code) == (202, 402)
        assert second.json()["error"]["details"]["period"] == "day"
        day = period((await c.get("/api/usage", headers=auth(user))).json(), "day")
        assert (day["budgetCredits"], day["remainingCredits"]) == (PRICE, 0)
