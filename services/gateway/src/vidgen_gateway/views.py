"""How a stored generation is shown: presigned URLs minted now, failures worded for users."""

from __future__ import annotations

from collections.abc import Callable

from vidgen_common.fairshare import PRIORITIES
from vidgen_gateway.models import Generation, Status
from vidgen_gateway.queue import NONE, Estimate
from vidgen_gateway.schemas import GenerationView
from vidgen_runway.verdicts import MODERATION_PREFIXES, MODERATION_USER_MESSAGE

Presign = Callable[[str], str]


def is_moderation(gen: Generation) -> bool:
    code = gen.runway_failure_code or ""
    return code.startswith(MODERATION_PREFIXES) or gen.error_code == "moderation"


def shown_error(gen: Generation) -> str | None:
    """What the user reads: never a moderation system's raw text (the row keeps it)."""
    if gen.error_message is None and gen.error_code is None:
        return None
    if is_moderation(gen):
        return MODERATION_USER_MESSAGE
    return gen.user_message or gen.error_message


_PRIORITY_NAMES = {rank: name for name, rank in PRIORITIES.items()}


def to_view(gen: Generation, presign: Presign, estimate: Estimate = NONE) -> GenerationView:
    """The view of ``gen``; ``estimate`` (:mod:`vidgen_gateway.queue`) adds its place and
    times while it is unfinished."""
    completed = gen.status == Status.completed.value
    return GenerationView(
        generation_id=gen.id,
        project_id=gen.project_id,
        status=Status(gen.status),
        progress=gen.progress,
        prompt=gen.prompt,
        model=gen.model,
        ratio=gen.ratio,
        duration=gen.duration,
        seed=gen.seed,
        runway_task_id=gen.runway_task_id,
        video_url=presign(gen.video_key) if completed and gen.video_key else None,
        thumbnail_url=presign(gen.thumbnail_key) if completed and gen.thumbnail_key else None,
        error_code=gen.error_code,
        error_message=shown_error(gen),
        runway_failure_code=gen.runway_failure_code,
        cost_credits=gen.cost_credits,
        cost_final=gen.cost_final,
        estimated_cost_credits=gen.estimated_cost_credits,
        settled_cost_credits=gen.settled_cost_credits,
        cancel_requested_at=gen.cancel_requested_at,
        created_at=gen.created_at,
        updated_at=gen.updated_at,
        completed_at=gen.completed_at,
        priority=_PRIORITY_NAMES.get(gen.priority, "normal"),
        queue_position=estimate.queue_position,
        queue_reason=estimate.queue_reason,
        waiting_until=estimate.waiting_until,
        estimated_start_at=estimate.estimated_start_at,
        estimated_completion_at=estimate.estimated_completion_at,
        estimated_completion_p90_at=estimate.estimated_completion_p90_at,
    )
