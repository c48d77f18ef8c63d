"""``GET /api/videos/{id}/events``: a generation's state as Server-Sent Events.

The stream sends the current state at once, then every change, and ends after a terminal
status. While the generation waits, its place and estimates
(:mod:`vidgen_gateway.queue`) are re-read every ``VIDGEN_QUEUE_REFRESH_S`` and sent when they
moved (same event id: the generation itself did not change). Each event's id is the
generation's ``version``, so a client reconnecting with ``Last-Event-ID`` gets only newer
states (and a waiting generation's current place); a finished generation with nothing newer answers
204, which tells an EventSource to stop reconnecting. Idle streams get a comment every
``VIDGEN_SSE_KEEPALIVE_S`` seconds, and the state is re-read then too, so a lost
notification delays an update by at most that long. When the process stops, open streams end
(the client reconnects, to another replica, with its ``Last-Event-ID``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from fastapi.responses import StreamingResponse

from vidgen_common.clock import utc_now
from vidgen_gateway.api.deps import (
    DepsDep,
    GatewayDeps,
    GenerationsDep,
    QueueDep,
    SessionDep,
    SettingsDep,
)
from vidgen_gateway.api.errors import error_responses
from vidgen_gateway.api.streamauth import StreamUserDep
from vidgen_gateway.generations import Generations
from vidgen_gateway.models import Generation, Status
from vidgen_gateway.queue import NONE, Estimate, Queue
from vidgen_gateway.settings import GatewaySettings
from vidgen_gateway.views import to_view

router = APIRouter(prefix="/api/videos", tags=["videos"])

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`text/event-stream`: events named `generation`, id = version, "
        "data = the generation as in GET /api/videos/status/{generationId}",
        "content": {
            "text/event-stream": {
                "schema": {
                    "description": "One event",
                    "type": "object",
                    "required": ["id", "event", "data"],
                    "properties": {
                        "id": {"type": "string", "description": "The generation's version"},
                        "event": {"type": "string", "enum": ["generation"]},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {"$ref": "#/components/schemas/GenerationView"},
                        },
                    },
                }
            }
        },
    },
    204: {"description": "Finished, and the client has its last state already"},
    **error_responses(401, 404),
}


def _last_event_id(value: str | None) -> int:
    try:
        return max(0, int(value)) if value else 0
    except ValueError:
        return 0


def format_event(gen: Generation, deps: GatewayDeps, estimate: Estimate = NONE) -> str:
    data = to_view(gen, deps.storage.presigned_get, estimate).model_dump_json(by_alias=True)
    return f"id: {gen.version}\nevent: generation\ndata: {data}\n\n"


async def _stream(
    deps: GatewayDeps,
    generations: Generations,
    queue: Queue,
    user: str,
    generation_id: str,
    last_sent: int,
    settings: GatewaySettings,
) -> AsyncIterator[str]:
    with deps.changes.subscribe(generation_id) as changes:
        yield f"retry: {settings.sse_retry_ms}\n\n"
        last_moved = -1.0  # when an estimate-only update was last sent
        last_estimate: Estimate | None = None
        quiet_s = 0.0
        while True:
            async with deps.sessions() as session:
                gen = await generations.get(session, user, generation_id)
                estimate = await queue.estimate(session, gen, utc_now())
            now = time.monotonic()
            first = last_estimate is None
            if gen.version > last_sent or (first and Status(gen.status) is Status.queued):
                yield format_event(gen, deps, estimate)
                last_sent, last_estimate, last_moved, quiet_s = gen.version, estimate, now, 0.0
            elif first:
                last_estimate = estimate  # the client has this version (and its estimate)
            elif _moved(last_estimate, estimate) and now - last_moved >= settings.queue_refresh_s:
                yield format_event(gen, deps, estimate)  # same version: the queue moved
                last_estimate, last_moved, quiet_s = estimate, now, 0.0
            if Status(gen.status).terminal or deps.changes.closed:
                return  # finished; or this replica is stopping (the client resumes elsewhere)
            # a waiting generation's place moves with others' changes: re-read it often
            wait_s = settings.sse_keepalive_s - quiet_s
            if Status(gen.status) is Status.queued:
                wait_s = min(wait_s, settings.queue_refresh_s)
            started = time.monotonic()
            woke = await changes.wait(max(0.0, wait_s))
            quiet_s += time.monotonic() - started
            if not woke and quiet_s >= settings.sse_keepalive_s:
                yield ": keep-alive\n\n"
                quiet_s = 0.0
            if deps.changes.closed:
                return


def _moved(before: Estimate | None, now: Estimate) -> bool:
    """A change worth an update: the place, the reason, or an estimate by a second or more."""
    if before is None:
        return now != NONE
    if (before.queue_position, before.queue_reason) != (now.queue_position, now.queue_reason):
        return True
    pairs = (
        (before.estimated_start_at, now.estimated_start_at),
        (before.estimated_completion_at, now.estimated_completion_at),
        (before.estimated_completion_p90_at, now.estimated_completion_p90_at),
    )
    for a, b in pairs:
        if (a is None) != (b is None):
            return True
        if a is not None and b is not None and abs((a - b).total_seconds()) >= 1.0:
            return True
    return False


@router.get(
    "/{generation_id}/events",
    response_class=StreamingResponse,
    summary="Follow a generation live (Server-Sent Events)",
    responses=_STREAM_DOC,
)
async def events(
    generation_id: str,
    user: StreamUserDep,
    generations: GenerationsDep,
    session: SessionDep,
    deps: DepsDep,
    settings: SettingsDep,
    queue: QueueDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> Response:
    gen = await generations.get(session, user, generation_id)
    await session.close()  # the stream reads with short sessions of its own
    last = _last_event_id(last_event_id)
    if Status(gen.status).terminal and gen.version <= last:
        return Response(status_code=204)
    return StreamingResponse(
        _stream(deps, generations, queue, user, generation_id, last, settings),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
