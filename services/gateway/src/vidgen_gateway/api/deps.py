"""What the routers depend on, as ``Annotated`` dependency aliases.

:class:`GatewayDeps` holds the adapters the app is built with (real ones from the runtime in
production, test doubles or test-scoped ones in tests); :func:`vidgen_gateway.app.create_app`
keeps it, and the services built on it, on ``app.state``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.metrics import Metrics
from vidgen_common.storage import Storage
from vidgen_common.uow import UnitOfWork
from vidgen_gateway.auth import TokenVerifier
from vidgen_gateway.changes import ChangeFeed
from vidgen_gateway.errors import Forbidden, Unauthorized
from vidgen_gateway.generations import Generations
from vidgen_gateway.projects import Projects
from vidgen_gateway.queue import Queue
from vidgen_gateway.settings import GatewaySettings

ReadyCheck = Callable[[], Awaitable[dict[str, str]]]

# The dependencies below are ``async def`` although they do not await: FastAPI runs plain
# ``def`` dependencies in a worker thread, a hop every request would pay.


@dataclass(frozen=True)
class GatewayDeps:
    """The adapters behind the API."""

    sessions: async_sessionmaker[AsyncSession]
    uow: Callable[[], UnitOfWork]
    storage: Storage
    changes: ChangeFeed
    verifier: TokenVerifier
    check_ready: ReadyCheck
    channel: str
    metrics: Metrics | None = None


async def _deps(request: Request) -> GatewayDeps:
    deps: GatewayDeps = request.app.state.deps
    return deps


async def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def _generations(request: Request) -> Generations:
    service: Generations = request.app.state.generations
    return service


async def _queue(request: Request) -> Queue:
    service: Queue = request.app.state.queue
    return service


async def _projects(request: Request) -> Projects:
    service: Projects = request.app.state.projects
    return service


async def _session(deps: Annotated[GatewayDeps, Depends(_deps)]) -> AsyncIterator[AsyncSession]:
    async with deps.sessions() as session:
        yield session


_bearer = HTTPBearer(
    auto_error=False, description="A JWT whose `sub` is the user id (`uv run vidgen token <user>`)"
)


async def _user(
    deps: Annotated[GatewayDeps, Depends(_deps)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized()
    return await deps.verifier.user_id(credentials.credentials)


async def _admin(
    deps: Annotated[GatewayDeps, Depends(_deps)],
    settings: Annotated[GatewaySettings, Depends(_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The caller's user id, if the token carries the administrator role (403 otherwise)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized()
    principal = await deps.verifier.principal(credentials.credentials)
    if settings.admin_role not in principal.roles:
        raise Forbidden("This endpoint is for administrators.")
    return principal.user_id


DepsDep = Annotated[GatewayDeps, Depends(_deps)]
SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
SessionDep = Annotated[AsyncSession, Depends(_session)]
UserDep = Annotated[str, Depends(_user)]
AdminDep = Annotated[str, Depends(_admin)]
GenerationsDep = Annotated[Generations, Depends(_generations)]
ProjectsDep = Annotated[Projects, Depends(_projects)]
QueueDep = Annotated[Queue, Depends(_queue)]
