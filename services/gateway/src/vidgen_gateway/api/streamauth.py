"""Who is calling, for the endpoints a browser opens without control over headers.

``EventSource`` cannot send an ``Authorization`` header, so ``GET /api/videos/{id}/events``
also takes the bearer token as the ``access_token`` query parameter (RFC 6750, section 2.3).
The header wins when both are present. The gateway logs paths, never query strings, so the
token does not reach the logs; a token in a URL can still reach a browser's history or a
proxy's logs, which is why no other endpoint accepts it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field

from vidgen_gateway.api.deps import DepsDep, _bearer
from vidgen_gateway.errors import Unauthorized, Unprocessable


class StreamQuery(BaseModel):
    """Query parameters of the live stream; unknown ones are refused (422), as on the list."""

    model_config = ConfigDict(extra="forbid")

    access_token: str | None = Field(
        None,
        max_length=8192,
        description="The bearer token, for clients that cannot send headers (EventSource)",
    )


async def _stream_user(
    request: Request,
    deps: DepsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    query: Annotated[StreamQuery, Query()],
) -> str:
    if len(request.query_params.getlist("access_token")) > 1:
        raise Unprocessable("access_token is given more than once.")
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return await deps.verifier.user_id(credentials.credentials)
    if query.access_token:
        return await deps.verifier.user_id(query.access_token)
    raise Unauthorized()


StreamUserDep = Annotated[str, Depends(_stream_user)]
