"""The generator's port to Runway, and its adapter on the official async SDK.

Every call of :class:`RunwayClient` raises :class:`~vidgen_runway.errors.RunwayCallError`
(carrying a :class:`~vidgen_runway.verdicts.Classified` verdict) when it fails; handlers never
see SDK or httpx exceptions. ``create`` is sent once (the SDK's retries are off) and judged by
:func:`~vidgen_runway.sdk.classify_create_error`: a ``RunwayCallError`` whose verdict is
``unknown`` means a task may exist anyway (a 500, a 504, a lost or unreadable answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from vidgen_runway.sdk import SdkAdapter, classify_create_error


@dataclass(frozen=True)
class CreateRequest:
    """One ``POST /v1/image_to_video``."""

    model: str
    prompt_image: str
    prompt_text: str
    ratio: str
    duration: int
    seed: int | None = None


@dataclass(frozen=True)
class Organization:
    """What ``GET /v1/organization`` tells about the limits (None: no limit, or not said)."""

    concurrency: dict[str, int | None] = field(default_factory=dict)
    """``tier.models[m].maxConcurrentGenerations``"""
    daily_max: dict[str, int | None] = field(default_factory=dict)
    """``tier.models[m].maxDailyGenerations``"""
    daily_used: dict[str, int] = field(default_factory=dict)
    """``usage.models[m].dailyGenerations`` (Runway's rolling 24 hours)"""
    credit_balance: int | None = None
    """``creditBalance``"""

    def daily_capped(self) -> set[str]:
        """Models whose tier's daily generations are used up."""
        return {
            m
            for m, most in self.daily_max.items()
            if most is not None and self.daily_used.get(m, 0) >= most
        }


class RunwayClient(Protocol):
    """What the generator asks of Runway."""

    async def upload(self, filename: str, data: bytes, content_type: str) -> str:
        """Upload an ephemeral file; returns its ``runway://`` URI."""

    async def create(self, request: CreateRequest) -> str:
        """Create an image-to-video task (no retries); returns the task id."""

    async def cancel(self, task_id: str) -> None:
        """Cancel (or delete, when it has ended) a task: ``DELETE /v1/tasks/{id}``. A task
        Runway no longer knows raises a ``runway_not_found`` verdict."""

    async def organization(self) -> Organization:
        """The tier's limits, the day's usage and the credit balance: ``GET /v1/organization``."""


class SdkRunwayClient(SdkAdapter):
    """:class:`RunwayClient` on ``AsyncRunwayML`` (built with ``max_retries=0``)."""

    async def upload(self, filename: str, data: bytes, content_type: str) -> str:
        try:
            result = await self._client.uploads.create_ephemeral(
                file=(filename, data, content_type)
            )
        except Exception as exc:
            raise self._failed("upload", exc) from exc
        self._count("upload", "ok")
        return result.uri

    async def create(self, request: CreateRequest) -> str:
        params: dict[str, Any] = {
            "model": request.model,
            "prompt_image": request.prompt_image,
            "prompt_text": request.prompt_text,
            "ratio": request.ratio,
            "duration": request.duration,
        }
        if request.seed is not None:
            params["seed"] = request.seed
        # The SDK types one overload per model (Literal names); ours is a runtime string that
        # Runway validates, so the call goes through an untyped view of the resource.
        resource = cast(Any, self._client.image_to_video)
        try:
            created = await resource.create(**params)
            task_id = getattr(created, "id", None)
            if not isinstance(task_id, str) or not task_id:
                raise ValueError(f"the create's answer has no task id: {created!r}")
        except Exception as exc:
            raise self._failed("create", exc, classify_create_error) from exc
        self._count("create", "ok")
        return task_id

    async def cancel(self, task_id: str) -> None:
        try:
            await self._client.tasks.delete(task_id)
        except Exception as exc:
            raise self._failed("delete", exc) from exc
        self._count("delete", "ok")

    async def organization(self) -> Organization:
        try:
            org = await self._client.organization.retrieve()
        except Exception as exc:
            raise self._failed("organization", exc) from exc
        self._count("organization", "ok")
        tier = org.tier.models
        return Organization(
            concurrency={name: m.max_concurrent_generations for name, m in tier.items()},
            daily_max={name: m.max_daily_generations for name, m in tier.items()},
            daily_used={name: m.daily_generations for name, m in org.usage.models.items()},
            credit_balance=org.credit_balance,
        )
