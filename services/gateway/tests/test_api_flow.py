"""The frontend's whole flow against real PostgreSQL, S3 and the projection."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


async def test_upload_generate_and_follow_to_completion(
    client: httpx.AsyncClient,
    auth: Any,
    upload: Any,
    feed: Any,
    downstream: Any,
    outbox: Any,
    storage: Any,
    image: Any,
) -> None:
    user = "alice"
    jpeg = image(640, 480, "JPEG")
    project = await upload(user, jpeg)
    assert set(project) >= {"projectId", "imageUrl"}
    # the stored image is the upload, under the user's prefix; the URL is a working presigned GET
    async with httpx.AsyncClient() as http:
        fetched = await http.get(project["imageUrl"])
    assert fetched.status_code == 200
    assert fetched.content == jpeg
    key = f"images/{user}/{project['projectId']}.jpg"
    assert await storage.get_bytes(key) == jpeg
    assert project["contentType"] == "image/jpeg"

    r = await client.post(
        "/api/videos/generate",
        json={"projectId": project["projectId"], "prompt": "waves at dusk", "seed": 7},
        headers=auth(user),
    )
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "queued"
    gid = body["generationId"]

    # GenerationRequested was written with the generation, in the outbox
    events = await outbox()
    assert [e["type"] for e in events] == ["vidgen.generation.requested.v1"]
    requested = events[0]["data"]
    assert requested["generationId"] == gid
    assert requested["userId"] == user
    assert requested["imageKey"] == key
    assert requested["imageContentType"] == "image/jpeg"
    assert (requested["model"], requested["ratio"], requested["duration"]) == (
        "gen4_turbo",
        "1280:720",
        5,
    )
    assert requested["seed"] == 7

    async def state() -> dict[str, Any]:
        r = await client.get(f"/api/videos/status/{gid}", headers=auth(user))
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    first = await state()
    assert first["status"] == "queued"
    assert first["progress"] == 0
    assert first["videoUrl"] is None
    assert first["projectId"] == project["projectId"]

    ev = downstream(gid, user)
    await feed(ev.submitted(estimate=25))
    s = await state()
    assert (s["status"], s["runwayTaskId"], s["costCredits"], s["costFinal"]) == (
        "generating",
        "task-1",
        25,
        False,
    )
    await feed(ev.progressed(0.4))
    assert (await state())["progress"] == pytest.approx(0.4)
    await feed(ev.ready(cost=25))
    s = await state()
    assert (s["status"], s["costFinal"]) == ("processing", True)

    # media stored the video and its thumbnail; the projection only keeps their keys
    video_key, thumb_key = f"videos/{user}/{gid}.mp4", f"videos/{user}/{gid}.jpg"
    await storage.put_bytes(video_key, b"\x00\x00\x00\x18ftypmp42 fake", "video/mp4")
    await storage.put_bytes(thumb_key, jpeg, "image/jpeg")
    await feed(ev.completed(cost=25))
    done = await state()
    assert done["status"] == "completed"
    assert done["progress"] == 1
    assert done["completedAt"] is not None
    assert done["errorCode"] is None
    async with httpx.AsyncClient() as http:
        video = await http.get(done["videoUrl"])
        thumb = await http.get(done["thumbnailUrl"])
    assert video.status_code == 200
    assert video.content.startswith(b"\x00\x00\x00\x18ftyp")
    assert thumb.content == jpeg
    # minted at read time: a second read signs again (the key is stored, never the URL)
    assert "X-Amz-Signature" in done["videoUrl"]

    listed = await client.get("/api/videos", headers=auth(user))
    assert [g["generationId"] for g in listed.json()["items"]] == [gid]
