"""`GET /_sim/tasks`: every task created, with what a test needs to hold a client to account."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
import runwayml
from runwayml import RunwayML

from runway_sim.testing import SimHandle
from runway_sim.testkit import wait_until


def _by_prompt(sim: SimHandle) -> dict[str | None, dict[str, object]]:
    return {task["prompt_text"]: task for task in sim.tasks()}


def test_lists_every_task_with_its_fate_and_faults(
    sim: SimHandle, client: RunwayML, image_uri: str
) -> None:
    sim.set_scenario({"moderation_words": ["banned"]})
    done = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, prompt_text="fine", ratio="1280:720"
    )
    refused = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, prompt_text="banned", ratio="1280:720"
    )
    sim.set_scenario({"lost_create": {"next_n": 1, "mode": "drop"}})
    with pytest.raises(runwayml.APIConnectionError):
        client.with_options(max_retries=0).image_to_video.create(
            model="gen4_turbo", prompt_image=image_uri, prompt_text="lost", ratio="1280:720"
        )
    wait_until(lambda: client.tasks.retrieve(done.id).status == "SUCCEEDED", timeout_s=10)
    wait_until(lambda: client.tasks.retrieve(refused.id).status == "FAILED", timeout_s=10)

    tasks = _by_prompt(sim)
    assert set(tasks) == {"fine", "banned", "lost"}
    fine, banned, lost = tasks["fine"], tasks["banned"], tasks["lost"]
    assert fine["id"] == done.id
    assert fine["status"] == "SUCCEEDED"
    assert fine["model"] == "gen4_turbo"
    assert fine["cost"] == fine["credits"] == 50  # 10 s at 5 credits/s
    assert fine["failure_code"] is None
    assert fine["faults"] == []
    assert fine["finished_at"] is not None
    assert str(fine["finished_at"]) >= str(fine["created_at"])
    assert banned["status"] == "FAILED"
    assert banned["failure_code"] == "SAFETY.INPUT.TEXT"
    assert banned["cost"] == 0  # refunded
    assert lost["faults"] == ["lost_create_drop"]  # created and charged, answer never sent
    assert lost["credits"] == 50
    datetime.fromisoformat(str(fine["created_at"]))


def test_deleted_tasks_stay_listed(sim: SimHandle, client: RunwayML, image_uri: str) -> None:
    task = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, prompt_text="keep", ratio="1280:720"
    )
    wait_until(lambda: client.tasks.retrieve(task.id).status == "SUCCEEDED", timeout_s=10)
    client.tasks.delete(task.id)
    with pytest.raises(runwayml.NotFoundError):
        client.tasks.retrieve(task.id)
    (listed,) = sim.tasks()
    assert listed["id"] == task.id
    assert listed["status"] == "SUCCEEDED"
    assert listed["deleted_at"] is not None


def test_download_faults_and_expired_urls_are_attributed(
    sim: SimHandle, client: RunwayML, image_uri: str
) -> None:
    task = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, prompt_text="dl", ratio="1280:720"
    )
    wait_until(lambda: client.tasks.retrieve(task.id).status == "SUCCEEDED", timeout_s=10)
    sim.set_scenario({"download_faults": {"next_n": 1, "mode": "truncate", "after_bytes": 10}})
    url = client.tasks.retrieve(task.id).output[0]
    assert len(httpx.get(url).content) == 10
    sim.set_scenario({"output_url_ttl_s": 0.001})
    expiring = client.tasks.retrieve(task.id).output[0]
    wait_until(lambda: httpx.get(expiring).status_code == 403, timeout_s=5)
    (listed,) = sim.tasks()
    assert listed["faults"][:2] == ["download_truncate", "output_url_expired"]


def test_reset_forgets_the_list(sim: SimHandle, client: RunwayML, image_uri: str) -> None:
    client.image_to_video.create(model="gen4_turbo", prompt_image=image_uri, ratio="1280:720")
    assert len(sim.tasks()) == 1
    sim.reset()
    assert sim.tasks() == []
