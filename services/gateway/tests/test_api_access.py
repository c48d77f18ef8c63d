"""Ownership (another user's ids answer 404 everywhere), idempotency, cancel and listing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


async def test_another_users_resources_are_not_found_everywhere(
    client: httpx.AsyncClient, auth: Any, upload: Any, generate: Any, outbox: Any
) -> None:
    gid = await generate("alice")
    project = await upload("alice")
    mallory = auth("mallory")
    checks = [
        await client.get(f"/api/videos/status/{gid}", headers=mallory),
        await client.post(f"/api/videos/{gid}/cancel", headers=mallory),
        await client.get(f"/api/videos/{gid}/events", headers=mallory),
        await client.post(
            "/api/videos/generate",
            json={"projectId": project["projectId"], "prompt": "steal"},
            headers=mallory,
        ),
    ]
    for r in checks:
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"
    # the same answer as for an id that does not exist at all
    unknown = await client.get(
        "/api/videos/status/00000000-0000-4000-8000-000000000000", headers=mallory
    )
    assert unknown.json()["error"] == checks[0].json()["error"]
    listed = await client.get("/api/videos", headers=mallory)
    assert listed.json() == {"items": [], "nextCursor": None}
    by_project = await client.get(
        "/api/videos", params={"projectId": project["projectId"]}, headers=mallory
    )
    assert by_project.json()["items"] == []
    # mallory's attempts changed nothing: alice's generation is still queued, no cancel sent
    assert [e["type"] for e in await outbox()] == ["vidgen.generation.requested.v1"]
    mine = await client.get(f"/api/videos/status/{gid}", headers=auth("alice"))
    assert mine.json()["status"] == "queued"


async def test_idempotent_retry_returns_the_same_generation(
    client: httpx.AsyncClient, auth: Any, upload: Any, outbox: Any
) -> None:
    project = await upload("alice")
    body = {"projectId": project["projectId"], "prompt": "a fox"}
    key = {"Idempotency-Key": "retry-0001"}
    first = await client.post("/api/videos/generate", json=body, headers={**auth("alice"), **key})
    again = await client.post("/api/videos/generate", json=body, headers={**auth("alice"), **key})
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    # defaults written out are the same request as defaults left out
    explicit = {**body, "model": "gen4_turbo", "ratio": "1280:720", "duration": 5}
    third = await client.post(
        "/api/videos/generate", json=explicit, headers={**auth("alice"), **key}
    )
    assert third.json() == first.json()
    assert len(await outbox()) == 1

    changed = {**body, "prompt": "a different fox"}
    r = await client.post("/api/videos/generate", json=changed, headers={**auth("alice"), **key})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "idempotency_key_reused"
    # keys are per user: bob's same key is a different request
    bob_project = await upload("bob")
    bob = await client.post(
        "/api/videos/generate",
        json={"projectId": bob_project["projectId"], "prompt": "a fox"},
        headers={**auth("bob"), **key},
    )
    assert bob.status_code == 202
    assert bob.json()["generationId"] != first.json()["generationId"]


async def test_concurrent_retries_with_one_key_create_one_generation(
    client: httpx.AsyncClient, auth: Any, upload: Any, outbox: Any
) -> None:
    project = await upload("alice")
    body = {"projectId": project["projectId"], "prompt": "a storm"}
    headers = {**auth("alice"), "Idempotency-Key": "burst-42"}
    answers = await asyncio.gather(
        *(client.post("/api/videos/generate", json=body, headers=headers) for _ in range(3))
    )
    assert {r.status_code for r in answers} == {202}
    assert len({r.json()["generationId"] for r in answers}) == 1
    assert len(await outbox()) == 1


async def test_cancel_emits_once_and_a_finished_generation_answers_409(
    client: httpx.AsyncClient, auth: Any, generate: Any, outbox: Any, feed: Any, downstream: Any
) -> None:
    gid = await generate("alice")
    r = await client.post(f"/api/videos/{gid}/cancel", headers=auth("alice"))
    assert r.status_code == 202
    assert r.json()["generationId"] == gid
    assert r.json()["status"] == "queued"
    assert r.json()["cancelRequestedAt"] is not None
    again = await client.post(f"/api/videos/{gid}/cancel", headers=auth("alice"))
    assert again.status_code == 202
    sent = [e for e in await outbox() if e["type"] == "vidgen.generation.cancel-requested.v1"]
    assert len(sent) == 1
    assert sent[0]["data"]["generationId"] == gid
    assert sent[0]["data"]["userId"] == "alice"

    from vidgen_common.events import GenerationCancelled

    await feed(
        GenerationCancelled(
            generation_id=gid, stage="poller", cancelled_at=sent[0]["data"]["requestedAt"]
        )
    )
    status = await client.get(f"/api/videos/status/{gid}", headers=auth("alice"))
    assert status.json()["status"] == "cancelled"
    late = await client.post(f"/api/videos/{gid}/cancel", headers=auth("alice"))
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "generation_finished"

    done = await generate("alice")
    await feed(downstream(done, "alice").completed())
    r = await client.post(f"/api/videos/{done}/cancel", headers=auth("alice"))
    assert r.status_code == 409


async def test_list_filters_and_pages_newest_first(
    client: httpx.AsyncClient,
    auth: Any,
    upload: Any,
    feed: Any,
    downstream: Any,
    settings: Any,
) -> None:
    p1, p2 = await upload("dora"), await upload("dora")
    ids = []
    for i in range(settings.generate_rate_limit):
        project = p1 if i % 2 == 0 else p2
        r = await client.post(
            "/api/videos/generate",
            json={"projectId": project["projectId"], "prompt": f"shot {i}"},
            headers=auth("dora"),
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["generationId"])
        await feed(downstream(ids[-1], "dora").failed())  # keep under the in-flight limit
    newest_first = ids[::-1]

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/videos", params=params, headers=auth("dora"))).json()
        assert len(page["items"]) <= 2
        seen += [g["generationId"] for g in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == newest_first

    only_p1 = await client.get(
        "/api/videos", params={"projectId": p1["projectId"]}, headers=auth("dora")
    )
    assert [g["generationId"] for g in only_p1.json()["items"]] == newest_first[
        (len(ids) + 1) % 2 :: 2
    ]
    failed = await client.get("/api/videos", params={"status": "failed"}, headers=auth("dora"))
    assert len(failed.json()["items"]) == len(ids)
    queued = await client.get("/api/videos", params={"status": "queued"}, headers=auth("dora"))
    assert queued.json()["items"] == []


async def test_empty_filters_mean_no_filter_and_unknown_ones_are_refused(
    client: httpx.AsyncClient, auth: Any, generate: Any
) -> None:
    gid = await generate("erin")
    r = await client.get("/api/videos?projectId=&status=&cursor=", headers=auth("erin"))
    assert r.status_code == 200, r.text
    assert [g["generationId"] for g in r.json()["items"]] == [gid]
    typo = await client.get("/api/videos?projectID=abc", headers=auth("erin"))
    assert typo.status_code == 422
    assert typo.json()["error"]["code"] == "validation_error"


async def test_an_expired_idempotency_key_names_a_new_request(
    client: httpx.AsyncClient, auth: Any, upload: Any, runtime: Any, settings: Any
) -> None:
    from sqlalchemy import text

    project = await upload("alice")
    headers = {**auth("alice"), "Idempotency-Key": "old-key"}
    body = {"projectId": project["projectId"], "prompt": "first"}
    first = await client.post("/api/videos/generate", json=body, headers=headers)
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text("UPDATE idempotency_keys SET created_at = now() - make_interval(secs => :s)"),
            {"s": settings.idempotency_ttl_s + 1},
        )
    again = await client.post(
        "/api/videos/generate", json={**body, "prompt": "second"}, headers=headers
    )
    assert again.status_code == 202, again.text
    assert again.json()["generationId"] != first.json()["generationId"]
    assert "idempotent-replayed" not in again.headers
