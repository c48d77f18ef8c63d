"""Turning an accepted `POST /v1/image_to_video` into a task, and preparing its output.

At creation the task's timings and fate are drawn from the scenario's seeded RNG (always the
same three draws per task, so a seed reproduces a run), the credits are charged, and the
prompt image is resolved in the background; once it decodes, the MP4 render starts right away
so it is ready (or nearly) when the task succeeds.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime

from runway_sim.assets import AssetError, resolve
from runway_sim.failures import draw_failure, moderation_hit, plan_for
from runway_sim.params import CreateRequest, ImageRef
from runway_sim.render import probe_image, ratio_size
from runway_sim.state import SimState
from runway_sim.tasks import ACTIVE, Task


def start_generation(state: SimState, request: CreateRequest, first_image: bytes | None) -> Task:
    now = state.clock()
    scenario = state.scenario
    queue_s = scenario.queue.draw(state.rng) * scenario.time_scale
    run_s = scenario.run_dist(request.model).draw(state.rng) * scenario.time_scale
    plan = draw_failure(scenario.failure_rates, state.rng)
    if moderation_hit(request.prompt_text, scenario.moderation_words) is not None:
        plan = plan_for("SAFETY.INPUT.TEXT")
    task = Task(
        id=str(uuid.uuid4()),
        request=request,
        created_wall=datetime.now(UTC),
        created_at=now,
        queue_s=queue_s,
        run_s=run_s,
        planned_failure=plan,
    )
    state.charge(request.credits)
    state.record_generation(request.model, now)
    state.counters.creates_accepted += 1
    state.counters.creates_by_model[request.model] += 1
    state.engine.add(task, now)
    state.ledger[task.id] = task
    state.spawn(_prepare(state, task, first_image))
    return task


async def load_image(state: SimState, ref: ImageRef) -> bytes:
    """Fetch/decode one prompt image and check it is a usable picture (AssetError if not)."""
    data = await resolve(
        ref,
        state.uploads,
        state.http,
        timeout_s=state.settings.fetch_timeout_s,
        max_bytes=state.settings.max_asset_bytes,
    )
    try:
        await asyncio.to_thread(probe_image, data)
    except ValueError as exc:
        raise AssetError(f"The asset is not a supported image ({exc}).") from exc
    return data


async def _prepare(state: SimState, task: Task, first_image: bytes | None) -> None:
    request = task.request
    try:
        data = first_image or await load_image(state, request.first_image)
        for ref in request.images:
            if ref.position != "first":
                await load_image(state, ref)
    except AssetError as exc:
        state.engine.asset_ready(task.id, False, str(exc), state.clock())
        return
    task.image_hash = hashlib.sha256(data).hexdigest()
    if task.planned_failure is None and task.status in ACTIVE:
        width, height = ratio_size(request.ratio, state.settings.render_height)
        key = (task.image_hash, width, height, request.duration, state.settings.render_fps)
        state.outputs[task.id] = state.renderer.submit(key, data)
    state.engine.asset_ready(task.id, True, None, state.clock())
