"""``GET /api/videos/{id}/events``: a generation's state as Server-Sent Events.

The stream sends the current state at once, then every change, and ends after a terminal
status. Each event's id is the generation's ``version``, so a client reconnecting with
``Last-Event-ID`` gets only newer states; a finished generation with nothing newer answers
204, which tells an EventSource to stop reconnecting. Idle streams get a comment every
``VIDGEN_SSE_KEEPALIVE_S`` seconds, and the state is re-read then too, so a lost
notification delays an update by at most that long. When the process stops, open streams end
(the client reconnects, to another replica, with its ``Last-Event-ID``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from fastapi.responses import StreamingResponse

from vidgen_gateway.api.deps import (
    DepsDep,
    GatewayDeps,
    GenerationsDep,
    SessionDep,
    SettingsDep,
)
from vidgen_gateway.api.errors import error_responses
from vidgen_gateway.api.streamauth import StreamUserDep
from vidgen_gateway.generations import Generations
from vidgen_gateway.models import Generation, Status
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


def format_event(gen: Generation, deps: GatewayDeps) -> str:
    data = to_view(gen, deps.storage.presigned_get).model_dump_json(by_alias=True)
    return f"id: {gen.version}\nevent: generation\ndata: {data}\n\n"


async def _stream(
    deps: GatewayDeps,
    generations: Generations,
    user: str,
    generation_id: str,
    last_sent: int,
    keepalive_s: float,
    retry_ms: int,
) -> AsyncIterator[str]:
    with deps.changes.subscribe(generation_id) as changes:
        yield f"retry: {retry_ms}\n\n"
        while True:
            async with deps.sessions() as session:
                gen = await generations.get(session, user, generation_id)
            if gen.version > last_sent:
                yield format_event(gen, deps)
                last_sent = gen.version
            if Status(gen.status).terminal or deps.changes.closed:
                return  # finished; or this replica is stopping (the client resumes elsewhere)
            if not await changes.wait(keepalive_s):
                yield ": keep-alive\n\n"
            if deps.changes.closed:
                return


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
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> Response:
    gen = await generations.get(session, user, generation_id)
    await session.close()  # the stream reads with short sessions of its own
    last = _last_event_id(last_event_id)
    if Status(gen.status).terminal and gen.version <= last:
        return Response(status_code=204)
    return StreamingResponse(
        _stream(
            deps,
            generations,
            user,
            generation_id,
            last,
            settings.sse_keepalive_s,
            settings.sse_retry_ms,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
