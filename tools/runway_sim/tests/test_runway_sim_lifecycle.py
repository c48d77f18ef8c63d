"""Task life: throttling, progress, failures, moderation, bad assets, cancel, reproducibility."""

from __future__ import annotations

import pytest
import runwayml
from runwayml import AsyncRunwayML, RunwayML
from runwayml.lib.polling import TaskFailedError

from runway_sim.testing import SimHandle
from runway_sim.testkit import data_uri, wait_until


def _durations(run_s: float, queue_s: float = 0.0) -> dict[str, object]:
    fixed = {"sigma": 0, "min_s": 0, "max_s": None}
    return {
        "queue": {"median_s": queue_s, **fixed},
        "durations": {"gen4_turbo": {"median_s": run_s, **fixed}},
    }


def test_throttled_until_a_slot_frees(sim: SimHandle, client: RunwayML, image_uri: str) -> None:
    sim.set_scenario(
        {**_durations(run_s=0.6), "org": {"models": {"gen4_turbo": {"max_concurrent": 1}}}}
    )
    first = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
    )
    second = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
    )

    waiting = client.tasks.retrieve(second.id)
    assert waiting.status == "THROTTLED"
    assert waiting.estimated_cost.credits == 50
    assert client.tasks.retrieve(first.id).status in ("PENDING", "RUNNING")

    wait_until(lambda: client.tasks.retrieve(first.id).status == "SUCCEEDED")
    assert client.tasks.retrieve(second.id).status in ("PENDING", "RUNNING")
    done = second.wait_for_task_output(timeout=10)
    assert done.status == "SUCCEEDED"
    timeline = sim.task_timeline(second.id)
    statuses = [step["status"] for step in timeline["history"]]
    assert statuses == ["THROTTLED", "PENDING", "RUNNING", "SUCCEEDED"]
    # the second task was admitted at the very instant the first one finished
    first_timeline = sim.task_timeline(first.id)
    first_end = first_timeline["created_at_s"] + first_timeline["history"][-1]["at_s"]
    second_admitted = timeline["created_at_s"] + timeline["history"][1]["at_s"]
    assert second_admitted == pytest.approx(first_end, abs=1e-6)


def test_raising_the_limit_admits_throttled_tasks(
    sim: SimHandle, client: RunwayML, image_uri: str
) -> None:
    sim.set_scenario(
        {**_durations(run_s=30), "org": {"models": {"gen4_turbo": {"max_concurrent": 1}}}}
    )
    client.image_to_video.create(model="gen4_turbo", prompt_image=image_uri, ratio="1280:720")
    second = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
    )
    assert client.tasks.retrieve(second.id).status == "THROTTLED"
    sim.set_scenario({"org": {"models": {"gen4_turbo": {"max_concurrent": 2}}}})
    assert client.tasks.retrieve(second.id).status in ("PENDING", "RUNNING")


def test_progress_rises_while_running(sim: SimHandle, client: RunwayML, image_uri: str) -> None:
    sim.set_scenario(_durations(run_s=1.5))
    task = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
    )
    seen: list[float] = []

    def progressed() -> bool:
        state = client.tasks.retrieve(task.id)
        if state.status == "RUNNING":
            assert 0 <= state.progress <= 1
            seen.append(state.progress)
        return state.status == "SUCCEEDED"

    wait_until(progressed, every_s=0.1)
    assert len(seen) >= 3
    assert seen == sorted(seen)
    assert seen[-1] > seen[0]


@pytest.mark.parametrize("code", ["INTERNAL.BAD_OUTPUT.CODE01", "SAFETY.OUTPUT.VIDEO", "INTERNAL"])
async def test_failure_codes(
    sim: SimHandle, aclient: AsyncRunwayML, image_uri: str, code: str
) -> None:
    sim.set_scenario({"failure_rates": {code: 1.0}})
    task = await aclient.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
    )
    with pytest.raises(TaskFailedError) as err:
        await task.wait_for_task_output(timeout=10)
    failed = err.value.task_details
    assert failed.status == "FAILED"
    assert failed.failure_code == code
    assert failed.failure
    assert failed.cost.credits == 0  # refunded
    counters = sim.counters()
    assert counters["failure_codes"] == {code: 1}
    assert counters["credits_charged"] == 0
    org = await aclient.organization.retrieve()
    assert org.credit_balance == sim.scenario()["org"]["credit_balance"]


def test_failure_rates_are_proportional_and_seeded(
    sim: SimHandle, client: RunwayML, image_uri: str
) -> None:
    sim.set_scenario({"seed": 7, "failure_rates": {"INTERNAL.BAD_OUTPUT.CODE01": 0.5}})

    def outcome_codes() -> list[str | None]:
        ids = [
            client.image_to_video.create(
                model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
            ).id
            for _ in range(20)
        ]
        return [sim.task_timeline(task_id)["planned_failure"] for task_id in ids]

    first = outcome_codes()
    sim.reset(keep_scenario=True)
    assert outcome_codes() == first
    assert 3 <= first.count("INTERNAL.BAD_OUTPUT.CODE01") <= 17


def test_realistic_durations_are_reproducible_with_a_seed(
    sim: SimHandle, client: RunwayML, image_uri: str
) -> None:
    sim.set_scenario(
        {
            "seed": 99,
            "time_scale": 1.0,
            "durations": {"gen4_turbo": {"median_s": 45, "sigma": 0.3, "min_s": 25, "max_s": 120}},
            "queue": {"median_s": 2, "sigma": 0.5, "min_s": 0.5, "max_s": 15},
        },
    )

    def drawn() -> list[tuple[float, float]]:
        ids = [
            client.image_to_video.create(
                model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
            ).id
            for _ in range(5)
        ]
        return [(t["queue_s"], t["run_s"]) for t in map(sim.task_timeline, ids)]

    first = drawn()
    sim.reset(keep_scenario=True)
    assert drawn() == first
    assert all(25 <= run <= 120 and 0.5 <= queue <= 15 for queue, run in first)
    assert len({run for _, run in first}) == 5


def test_moderation_word_fails_with_safety_input_text(
    sim: SimHandle, client: RunwayML, image_uri: str
) -> None:
    sim.set_scenario({"moderation_words": ["forbidden"]})
    fine = client.image_to_video.create(
        model="gen4_turbo",
        prompt_image=image_uri,
        ratio="1280:720",
        prompt_text="unforbiddenly calm",
    )
    flagged = client.image_to_video.create(
        model="gen4_turbo",
        prompt_image=image_uri,
        ratio="1280:720",
        prompt_text="A FORBIDDEN scene",
    )
    assert fine.wait_for_task_output(timeout=10).status == "SUCCEEDED"
    with pytest.raises(TaskFailedError) as err:
        flagged.wait_for_task_output(timeout=10)
    assert err.value.task_details.failure_code == "SAFETY.INPUT.TEXT"
    statuses = [s["status"] for s in sim.task_timeline(flagged.id)["history"]]
    assert "RUNNING" not in statuses  # input moderation fails before generation starts


def test_undecodable_image_fails_with_asset_invalid(client: RunwayML) -> None:
    task = client.image_to_video.create(
        model="gen4_turbo", prompt_image=data_uri(b"not an image at all"), ratio="1280:720"
    )
    with pytest.raises(TaskFailedError) as err:
        task.wait_for_task_output(timeout=10)
    assert err.value.task_details.failure_code == "ASSET.INVALID"
    assert err.value.task_details.cost.credits == 0


def test_unreachable_url_fails_with_asset_invalid(sim: SimHandle, client: RunwayML) -> None:
    task = client.image_to_video.create(
        model="gen4_turbo", prompt_image="http://127.0.0.1:9/frame.png", ratio="1280:720"
    )
    with pytest.raises(TaskFailedError) as err:
        task.wait_for_task_output(timeout=10)
    assert err.value.task_details.failure_code == "ASSET.INVALID"
    assert "Failed to fetch asset" in err.value.task_details.failure


def test_asset_errors_at_create_mode(sim: SimHandle, client: RunwayML) -> None:
    sim.set_scenario({"asset_errors_at_create": True})
    with pytest.raises(runwayml.BadRequestError) as err:
        client.image_to_video.create(
            model="gen4_turbo", prompt_image=f"{sim.base_url}/_sim/health", ratio="1280:720"
        )
    assert "Unsupported asset type" in str(err.value)
    assert sim.counters()["creates_accepted"] == 0


def test_cancel_running_then_delete(sim: SimHandle, client: RunwayML, image_uri: str) -> None:
    sim.set_scenario(_durations(run_s=30))
    task = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720", duration=2
    )
    wait_until(lambda: client.tasks.retrieve(task.id).status == "RUNNING")
    client.tasks.delete(task.id)
    cancelled = client.tasks.retrieve(task.id)
    assert cancelled.status == "CANCELLED"
    assert cancelled.cost.credits == 10  # cancelled while RUNNING: no refund
    client.tasks.delete(task.id)  # deleting a finished task forgets it
    with pytest.raises(runwayml.NotFoundError):
        client.tasks.retrieve(task.id)
    assert sim.counters()["final_statuses"] == {"CANCELLED": 1}


async def test_cancel_throttled_is_refunded(
    sim: SimHandle, aclient: AsyncRunwayML, image_uri: str
) -> None:
    scenario = sim.set_scenario(
        {**_durations(run_s=30), "org": {"models": {"gen4_turbo": {"max_concurrent": 1}}}}
    )
    assert scenario["org"]["models"]["gen4_turbo"]["max_concurrent"] == 1
    await aclient.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
    )
    queued = await aclient.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
    )
    assert (await aclient.tasks.retrieve(queued.id)).status == "THROTTLED"
    await aclient.tasks.delete(queued.id)
    cancelled = await aclient.tasks.retrieve(queued.id)
    assert cancelled.status == "CANCELLED"
    assert cancelled.cost.credits == 0
    assert sim.counters()["credits_charged"] == 50  # only the running one


async def test_delete_succeeded_task_removes_it(aclient: AsyncRunwayML, image_uri: str) -> None:
    task = await aclient.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
    )
    done = await task.wait_for_task_output(timeout=10)
    await aclient.tasks.delete(done.id)
    with pytest.raises(runwayml.NotFoundError):
        await aclient.tasks.retrieve(done.id)
