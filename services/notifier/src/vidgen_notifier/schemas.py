"""The webhooks API's bodies (camelCase JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class EndpointCreate(ApiModel):
    url: str = Field(max_length=2048, examples=["https://example.com/hooks/vidgen"])
    events: list[str] | None = Field(
        None,
        max_length=4,
        description="generation.completed, generation.failed, generation.cancelled, "
        "generation.progressed (default: the three terminal ones)",
    )
    description: str | None = Field(None, max_length=500)


class EndpointPatch(ApiModel):
    url: str | None = Field(None, max_length=2048)
    events: list[str] | None = Field(None, max_length=4)
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = Field(
        None, description="true re-enables a disabled endpoint: the deliveries that waited go"
    )


class EndpointView(ApiModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime


class EndpointCreated(EndpointView):
    secret: str = Field(description="whsec_…: shown only in this answer")


class EndpointList(ApiModel):
    items: list[EndpointView]


class RotateRequest(ApiModel):
    overlap_seconds: int | None = Field(
        None, ge=0, le=7 * 86400, description="how long the previous secret still signs"
    )


class Rotated(ApiModel):
    secret: str
    previous_secret_expires_at: datetime | None


class Accepted(ApiModel):
    delivery_id: str


class AttemptView(ApiModel):
    at: datetime
    status_code: int | None
    latency_ms: int | None
    error: str | None


class DeliveryView(ApiModel):
    id: str
    webhook_id: str
    event_type: str
    generation_id: str | None
    status: Literal["pending", "delivered", "failed", "disabled"]
    attempts: list[AttemptView]
    next_attempt_at: datetime | None
    created_at: datetime


class DeliveryPage(ApiModel):
    items: list[DeliveryView]
    next_cursor: str | None


class SigningKeyView(ApiModel):
    public_key: str = Field(description="whpk_…: verifies the v1a signatures (Ed25519)")


class UserSecretView(ApiModel):
    secret: str = Field(description="whsec_…: signs the webhooks of generate requests")
    previous_secret_expires_at: datetime | None = None
