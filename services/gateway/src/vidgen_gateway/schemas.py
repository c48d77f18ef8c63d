"""The JSON the REST API speaks: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from vidgen_gateway.models import Status
from vidgen_gateway.runway_models import (
    MAX_DURATION,
    MIN_DURATION,
    PROMPT_MAX_UTF16,
    SEED_MAX,
    ModelName,
    RatioName,
    utf16_length,
)

ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"

Priority = Literal["low", "normal", "high"]
QueueReason = Literal[
    "waiting_for_capacity", "submitting", "daily_cap_reached", "organization_out_of_credits"
]


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ErrorDetail(ApiModel):
    code: str = Field(description="Stable machine-readable code", examples=["not_found"])
    message: str = Field(description="Human-readable explanation")
    details: dict[str, Any] = Field(default_factory=dict, description="Extra, code-specific data")


class ErrorResponse(ApiModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail


class UploadResponse(ApiModel):
    project_id: str = Field(description="The new project holding the image")
    image_url: str = Field(description="Short-lived presigned URL of the stored image")
    width: int
    height: int
    content_type: str = Field(examples=["image/png"])


class GenerateRequest(ApiModel):
    """What to generate. ``model``, ``ratio`` and ``duration`` default to gen4_turbo,
    1280:720 and 5 s (or the model's shortest duration when it has no 5 s)."""

    project_id: str = Field(
        min_length=1, max_length=64, pattern=ID_PATTERN, description="From the upload"
    )
    prompt: str = Field(
        min_length=1,
        max_length=PROMPT_MAX_UTF16,
        description="What should happen in the video (at most 1000 UTF-16 code units)",
    )
    model: ModelName | None = Field(None, description="Runway model (default gen4_turbo)")
    ratio: RatioName | None = Field(
        None, description="Output resolution W:H; each model offers some (default 1280:720)"
    )
    duration: int | None = Field(
        None,
        ge=MIN_DURATION,
        le=MAX_DURATION,
        description="Seconds of video; each model offers some (default 5, or the model's shortest)",
    )
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="For reproducible output")
    priority: Priority | None = Field(
        None,
        description="Order among your own waiting generations (default normal); between "
        "users the Runway slots go round-robin whatever the priority",
    )
    webhook_url: str | None = Field(
        None,
        max_length=2048,
        description="Also send this generation's webhooks here, signed with your own secret "
        "(GET /api/webhooks/user-secret); https in production, public addresses only",
        examples=["https://example.com/hooks/vidgen"],
    )
    webhook_events: list[str] | None = Field(
        None,
        max_length=4,
        description="Event types wanted at webhookUrl (default: generation.completed, "
        "generation.failed, generation.cancelled; also generation.progressed)",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt must not be blank")
        if "\x00" in value or not _encodable(value):
            raise ValueError("the prompt must be valid text (no NUL, no lone surrogate)")
        if utf16_length(value) > PROMPT_MAX_UTF16:
            raise ValueError(f"the prompt is longer than {PROMPT_MAX_UTF16} UTF-16 code units")
        return value


class GenerateResponse(ApiModel):
    generation_id: str
    status: Status
    estimated_cost_credits: int | None = Field(
        None,
        description="The catalog's price (credits per second x duration), reserved against "
        "the caller's budgets until the generation ends",
    )


class GenerationView(ApiModel):
    """A generation as the frontend sees it."""

    generation_id: str
    project_id: str
    status: Status
    progress: float = Field(ge=0, le=1, description="0 to 1; never decreases")
    prompt: str
    model: str
    ratio: str
    duration: int
    seed: int | None
    runway_task_id: str | None
    video_url: str | None = Field(description="Short-lived presigned URL once completed")
    thumbnail_url: str | None = Field(description="Short-lived presigned URL once completed")
    error_code: str | None = Field(
        description="Stable code of the failure", examples=["moderation"]
    )
    error_message: str | None = Field(
        description="Why it failed (a neutral text for content-moderation refusals)"
    )
    runway_failure_code: str | None = Field(examples=["SAFETY.INPUT.TEXT"])
    cost_credits: int | None = Field(description="Runway credits: an estimate until costFinal")
    cost_final: bool
    estimated_cost_credits: int | None = Field(
        None, description="The catalog's price at admission, reserved until settled"
    )
    settled_cost_credits: int | None = Field(
        None,
        description="What the generation was charged to the caller's budgets once it ended "
        "(Runway's final cost; 0 when refunded); null until then",
    )
    cancel_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = Field(description="When it reached a terminal status")
    priority: Priority = Field("normal", description="Its order among your waiting ones")
    queue_position: int | None = Field(
        None,
        ge=1,
        description="While queued: its place among the generations waiting for the same "
        "model (1: the next to start); null otherwise",
    )
    queue_reason: QueueReason | None = Field(
        None,
        description="While queued: `waiting_for_capacity` (every Runway slot of the model is "
        "taken, or others are ahead), `submitting` (a slot is free: it is being sent), "
        "`daily_cap_reached` (Runway's daily limit for the model is used up: see "
        "`waitingUntil`) or `organization_out_of_credits` (the organisation's Runway credit "
        "balance does not cover it: it goes once credits are added)",
    )
    waiting_until: datetime | None = Field(
        None,
        description="With `daily_cap_reached`: when the cap should let it through; null otherwise",
    )
    estimated_start_at: datetime | None = Field(
        None,
        description="When its Runway task should start (the real start once it has); null "
        "once finished",
    )
    estimated_completion_at: datetime | None = Field(
        None, description="When it should be completed (median estimate); null once finished"
    )
    estimated_completion_p90_at: datetime | None = Field(
        None,
        description="An upper bound of the completion, exceeded about one time in ten; null "
        "once finished",
    )


class ListQuery(ApiModel):
    """Filters of ``GET /api/videos``; an empty value means no filter (``?projectId=&status=``).

    Unknown parameters are refused (422), so a misspelt filter is not silently ignored.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    project_id: str | None = Field(
        None, max_length=64, pattern=r"^[A-Za-z0-9-]*$", description="Only this project's"
    )
    status: Status | Literal[""] | None = Field(None, description="Only those in this status")
    cursor: str | None = Field(None, max_length=512, description="`nextCursor` of the last page")
    limit: int = Field(20, ge=1, le=100, description="Page size")


class GenerationPage(ApiModel):
    items: list[GenerationView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")


class HealthResponse(ApiModel):
    status: str
    service: str


class ReadinessResponse(ApiModel):
    status: str = Field(examples=["ok", "unavailable"])
    checks: dict[str, str] = Field(examples=[{"database": "ok", "kafka": "ok"}])


class PeriodUsage(ApiModel):
    """One budget period (a UTC day or month) of one user."""

    period: Literal["day", "month"]
    start: date = Field(description="First day of the period (UTC)")
    resets_at: datetime = Field(description="When the period ends (UTC midnight)")
    budget_credits: int | None = Field(description="null: unlimited")
    spent_credits: int = Field(description="Settled costs of generations requested in it")
    reserved_credits: int = Field(description="Estimates held for generations not yet ended")
    remaining_credits: int | None = Field(description="budget - spent - reserved; null: unlimited")


class ModelUsage(ApiModel):
    model: str
    generations: int
    spent_credits: int
    reserved_credits: int


class DayUsage(ApiModel):
    day: date
    generations: int
    spent_credits: int
    reserved_credits: int


class UsageResponse(ApiModel):
    """A user's credit usage: this UTC day and month, and this month by model and by day."""

    user_id: str
    budget_source: Literal["default", "override"] = Field(
        description="`override`: set by an administrator; `default`: the settings'"
    )
    periods: list[PeriodUsage]
    by_model: list[ModelUsage] = Field(description="This month's generations, per model")
    by_day: list[DayUsage] = Field(description="This month's generations, per UTC day")


class BudgetRequest(ApiModel):
    """A user's budgets in credits; null is unlimited (DELETE returns to the defaults)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    daily_credits: int | None = Field(ge=0, le=2**62, description="per UTC day; null: unlimited")
    monthly_credits: int | None = Field(
        ge=0, le=2**62, description="per UTC month; null: unlimited"
    )


class BudgetResponse(ApiModel):
    user_id: str
    source: Literal["default", "override"]
    daily_credits: int | None
    monthly_credits: int | None
    updated_by: str | None = None
    updated_at: datetime | None = None
