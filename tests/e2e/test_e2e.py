"""End to end, through the REST API, against every service running as real processes."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import io
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from tests.support.system import System
from vidgen_common.events import GenerationCompleted, topic_for
from vidgen_runway.verdicts import MODERATION_USER_MESSAGE

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "docs" / "sample.png"
CONSUMER_EXAMPLE = ROOT / "docs" / "examples" / "consume_completed.py"
TERMINAL = {"completed", "failed", "cancelled"}


def poll(fn: Callable[[], Any], what: str, within: float = 60.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(interval)


def upload(client: httpx.Client) -> str:
    response = client.post(
        "/api/images/upload", files={"file": ("sample.png", SAMPLE.read_bytes(), "image/png")}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["imageUrl"].startswith("http")
    return str(body["projectId"])


def generate(client: httpx.Client, project_id: str, prompt: str, **extra: Any) -> str:
    response = client.post(
        "/api/videos/generate",
        json={"projectId": project_id, "prompt": prompt, "duration": 5, **extra},
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return str(response.json()["generationId"])


def status(client: httpx.Client, generation_id: str) -> dict[str, Any]:
    response = client.get(f"/api/videos/status/{generation_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_terminal(client: httpx.Client, generation_id: str, within: float = 90) -> dict[str, Any]:
    return dict(
        poll(
            lambda: (s := status(client, generation_id))["status"] in TERMINAL and s,
            f"generation {generation_id} to end",
            within,
        )
    )


def test_happy_path_ends_with_a_stored_valid_video(system: System, fast_runway: System) -> None:
    with system.client("alice") as client:
        project_id = upload(client)
        generation_id = generate(client, project_id, "a slow pan over misty hills")
        final = wait_terminal(client, generation_id)
        assert final["status"] == "completed", final
        assert final["progress"] == 1
        assert final["errorCode"] is None
        assert (final["costCredits"] or 0) > 0
        assert final["completedAt"]
        video = httpx.get(final["videoUrl"], timeout=30)
        assert video.status_code == 200
        thumbnail = httpx.get(final["thumbnailUrl"], timeout=30)
        assert thumbnail.status_code == 200, thumbnail.text
        assert thumbnail.content[:3] == b"\xff\xd8\xff"  # a JPEG
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert container.duration is not None
        assert abs(container.duration / 1_000_000 - 5) < 0.3
        assert abs(stream.width / stream.height - 1280 / 720) < 0.01  # default 1280:720
    # Media recorded the checksum of exactly these bytes.
    [(sha,)] = system.sql(
        "SELECT sha256 FROM media.transfers WHERE generation_id = :g", g=generation_id
    )
    assert sha == hashlib.sha256(video.content).hexdigest()


def test_live_progress_stream_ends_at_the_terminal_status(
    system: System, fast_runway: System
) -> None:
    with system.client("sse-user") as client:
        generation_id = generate(client, upload(client), "waves rolling in")
        statuses: list[str] = []
        with client.stream("GET", f"/api/videos/{generation_id}/events", timeout=90) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    statuses.append(json.loads(line[5:])["status"])
        assert statuses[-1] == "completed"
        order = ["queued", "generating", "processing", "completed"]
        assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses)


def test_a_runway_failure_reaches_the_user_with_its_reason(
    system: System, fast_runway: System
) -> None:
    system.set_scenario({"moderation_words": ["forbiddenword"]})
    with system.client("bob") as client:
        generation_id = generate(client, upload(client), "a forbiddenword in the sky")
        final = wait_terminal(client, generation_id)
    assert final["status"] == "failed"
    assert final["errorCode"] == "moderation"
    assert final["runwayFailureCode"] == "SAFETY.INPUT.TEXT"  # Runway's code is kept
    assert final["errorMessage"] == MODERATION_USER_MESSAGE  # the user sees a neutral text
    [(stored_reason,)] = system.sql(
        "SELECT error_message FROM gateway.generations WHERE id = :g", g=generation_id
    )
    assert stored_reason  # the real reason is kept, not the neutral text
    assert stored_reason != MODERATION_USER_MESSAGE


def test_cancel_stops_the_runway_task(system: System, fast_runway: System) -> None:
    system.set_scenario({"durations": {"gen4_turbo": {"median_s": 60, "sigma": 0, "min_s": 0}}})
    with system.client("carol") as client:
        generation_id = generate(client, upload(client), "a long slow sunrise")
        poll(lambda: status(client, generation_id)["status"] == "generating", "generating")
        response = client.post(f"/api/videos/{generation_id}/cancel")
        assert response.status_code == 202, response.text
        final = wait_terminal(client, generation_id, within=60)
        assert final["status"] == "cancelled"
        assert client.post(f"/api/videos/{generation_id}/cancel").status_code == 409
    poll(
        lambda: system.counters()["tasks_by_status"].get("CANCELLED", 0) >= 1,
        "the Runway task to be cancelled",
    )


def test_two_users_are_isolated(system: System, fast_runway: System) -> None:
    with system.client("dave") as dave, system.client("erin") as erin:
        project_id = upload(dave)
        generation_id = generate(dave, project_id, "a quiet forest")
        assert erin.get(f"/api/videos/status/{generation_id}").status_code == 404
        assert erin.post(f"/api/videos/{generation_id}/cancel").status_code == 404
        assert erin.get(f"/api/videos/{generation_id}/events").status_code == 404
        listed = erin.get("/api/videos", params={"projectId": project_id})
        assert listed.status_code == 200
        assert listed.json()["items"] == []  # a list only ever holds the caller's own
        stolen = erin.post(
            "/api/videos/generate", json={"projectId": project_id, "prompt": "mine now"}
        )
        assert stolen.status_code == 404
        assert wait_terminal(dave, generation_id)["status"] == "completed"


@pytest.mark.timeout(300)  # its own waits allow 240 s: the global 120 s must not cut them short
def test_a_burst_of_50_generations_all_end_with_nothing_lost_or_duplicated(
    system: System, fast_runway: System
) -> None:
    before = system.counters()["creates_accepted"]
    # Ten users at once, five each (the gateway's per-user in-flight limit is 5).
    clients = [system.client(f"burst-{u}") for u in range(10)]
    try:
        projects = [upload(c) for c in clients]
        owned = [
            (c, generate(c, p, f"burst {u}.{i}"))
            for u, (c, p) in enumerate(zip(clients, projects, strict=True))
            for i in range(5)
        ]
        finals = {gid: wait_terminal(c, gid, within=240) for c, gid in owned}
    finally:
        for c in clients:
            c.close()
    ids = [gid for _, gid in owned]
    assert {f["status"] for f in finals.values()} == {"completed"}, {
        gid: (f["status"], f["errorCode"])
        for gid, f in finals.items()
        if f["status"] != "completed"
    }
    # Every service saw every generation exactly once.
    assert system.sql(
        "SELECT count(*), count(DISTINCT id) FROM gateway.generations WHERE id = ANY(:ids)",
        ids=ids,
    ) == [(50, 50)]
    tasks = system.sql(
        "SELECT generation_id, runway_task_id FROM generator.submissions "
        "WHERE generation_id = ANY(:ids) AND runway_task_id IS NOT NULL",
        ids=ids,
    )
    assert len(tasks) == 50
    assert len({t for _, t in tasks}) == 50
    assert system.sql(
        "SELECT count(DISTINCT generation_id) FROM poller.tracked_tasks "
        "WHERE generation_id = ANY(:ids)",
        ids=ids,
    ) == [(50,)]
    assert system.sql(
        "SELECT count(*) FROM media.transfers WHERE generation_id = ANY(:ids) "
        "AND state = 'completed'",
        ids=ids,
    ) == [(50,)]
    # Runway created exactly one task per generation.
    assert system.counters()["creates_accepted"] - before == 50


def test_one_trace_follows_a_generation_through_all_four_services(
    system: System, fast_runway: System
) -> None:
    with system.client("tracy") as client:
        generation_id = generate(client, upload(client), "a lighthouse at dusk")
        assert wait_terminal(client, generation_id)["status"] == "completed"

    def services_in_trace() -> set[str] | None:
        mine = [
            s
            for s in system.spans()
            if s["attributes"].get("vidgen.generation_id") == generation_id
        ]
        if not mine:
            return None
        trace_ids = {s["trace_id"] for s in mine}
        assert len(trace_ids) == 1, trace_ids
        [trace_id] = trace_ids
        found = {s["service"] for s in system.spans() if s["trace_id"] == trace_id}
        return found if found >= {"gateway", "generator", "poller", "media"} else None

    poll(services_in_trace, "spans of all four services in one trace", within=20)


def test_every_service_exposes_prometheus_metrics(system: System, fast_runway: System) -> None:
    for name, port in system.ops_ports.items():
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        if name.endswith("-relay"):
            assert "vidgen_outbox_lag_seconds" in text, name
        else:
            assert "vidgen_events_handled_total" in text, name


def test_the_cli_drives_the_whole_flow(system: System, fast_runway: System, tmp_path: Path) -> None:
    def vidgen(*args: str) -> Any:
        result = subprocess.run(
            [sys.executable, "-m", "vidgen_cli", "--api-url", system.gateway, "--user", "cli-user",
             "--json", *args],
            env=system.env, capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout) if result.stdout.strip().startswith("{") else result.stdout

    project_id = vidgen("upload", str(SAMPLE))["projectId"]
    generation_id = vidgen("generate", project_id, "a red kite over a beach")["generationId"]
    assert vidgen("watch", generation_id)["status"] == "completed"
    assert vidgen("status", generation_id)["status"] == "completed"
    listed = vidgen("list", "--project", project_id)
    assert [item["generationId"] for item in listed["items"]] == [generation_id]
    target = tmp_path / "video.mp4"
    vidgen("download", generation_id, "-o", str(target))
    with av.open(str(target)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_a_consumer_reads_the_finished_video_as_a_cloudevent(
    system: System, fast_runway: System
) -> None:
    """The consumer guide's example, pointed at the system, receives this generation's event."""
    spec = importlib.util.spec_from_file_location("consume_completed", CONSUMER_EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with system.client("cloudevent-reader") as client:
        generation_id = generate(client, upload(client), "a paper boat on a pond")
        assert wait_terminal(client, generation_id)["status"] == "completed"

    got: list[tuple[dict[str, Any], dict[str, Any]]] = []

    async def read() -> None:
        stop = asyncio.Event()

        async def on_completed(attributes: dict[str, Any], data: dict[str, Any]) -> None:
            if attributes["subject"] == generation_id:
                got.append((attributes, data))
                stop.set()

        topic = topic_for(GenerationCompleted, system.env.get("KAFKA_TOPIC_PREFIX", ""))
        await asyncio.wait_for(
            example.consume(
                on_completed,
                bootstrap=system.env["KAFKA_BOOTSTRAP_SERVERS"],
                topic=topic,
                group_id=f"e2e-reader-{uuid.uuid4().hex[:8]}",
                stop=stop,
            ),
            timeout=60,
        )

    asyncio.run(read())
    [(attributes, data)] = got
    assert attributes["type"] == "vidgen.generation.completed.v1"
    assert attributes["source"] == "/vidgen/media"
    [(sha, key)] = system.sql(
        "SELECT sha256, video_key FROM media.transfers WHERE generation_id = :g", g=generation_id
    )
    assert data["sha256"] == sha
    assert data["videoKey"] == key
    assert data["codec"] == "h264"
