"""Every cross-service event, as a frozen, versioned pydantic model.

An event's CloudEvent ``type`` is ``vidgen.<name>.v<version>`` and it travels on the topic
``<name>`` (one topic per event type), keyed by its generation id. JSON on the wire is
camelCase. A published version is never edited: a breaking change is a new class with
``version = n + 1`` plus an upcaster from ``n`` (see :mod:`vidgen_common.events.catalog`).
Adding an optional field is not breaking: consumers ignore fields they do not know.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Stage = Literal["gateway", "generator", "poller", "media"]
Priority = Literal["low", "normal", "high"]


class EventData(BaseModel):
    """Base of every event payload (the CloudEvent ``data``)."""

    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )

    name: ClassVar[str]
    version: ClassVar[int] = 1

    generation_id: str = Field(
        description="The generation this event is about (also the Kafka key and CE subject)",
        examples=["0b6f1c2e-3d4a-4b5c-8d9e-0f1a2b3c4d5e"],
    )

    @classmethod
    def event_type(cls) -> str:
        """The CloudEvent ``type`` of this model, e.g. ``vidgen.generation.requested.v1``."""
        return f"vidgen.{cls.name}.v{cls.version}"


class GenerationRequested(EventData):
    """A user asked for a video; the gateway accepted and stored the request."""

    name: ClassVar[str] = "generation.requested"

    project_id: str = Field(description="Project holding the prompt image")
    user_id: str = Field(description="Owner (JWT subject)", examples=["user-42"])
    image_key: str = Field(
        description="Object key of the prompt image in vidgen's store",
        examples=["images/user-42/5d1c.png"],
    )
    image_content_type: str = Field(examples=["image/png"])
    prompt: str = Field(description="Text prompt", examples=["a slow pan over a misty lake"])
    model: str = Field(description="Runway model", examples=["gen4_turbo"])
    ratio: str = Field(description="Output resolution as Runway names it", examples=["1280:720"])
    duration: int = Field(description="Video length in seconds", examples=[5])
    seed: int | None = Field(None, description="Runway seed, for reproducible output")
    requested_at: datetime
    webhook_url: str | None = Field(
        None,
        description="A webhook for this generation only, signed with the user's own secret "
        "(added in the same version: optional, consumers that do not know it ignore it)",
        examples=["https://example.com/hooks/vidgen"],
    )
    webhook_events: list[str] | None = Field(
        None,
        description="The webhook event types wanted at webhook_url (default: the terminal "
        "ones: generation.completed, generation.failed, generation.cancelled)",
        examples=[["generation.completed", "generation.failed"]],
    )
    priority: Priority = Field(
        "normal",
        description="Order among the same user's waiting generations (added in the same "
        "version: optional, normal when absent); between users slots go round-robin",
    )


class GenerationCancelRequested(EventData):
    """A user asked to cancel a generation."""

    name: ClassVar[str] = "generation.cancel-requested"

    user_id: str
    requested_at: datetime


class TaskSubmitted(EventData):
    """Runway accepted a task for the generation (the task id is recorded)."""

    name: ClassVar[str] = "generation.task-submitted"

    user_id: str
    runway_task_id: str = Field(description="Runway's task id", examples=["7f3a…"])
    model: str
    duration: int = Field(description="Requested video length in seconds")
    attempt: int = Field(1, ge=1, description="1 for the first task, n for the n-th resubmission")
    estimated_cost_credits: int | None = Field(None, description="Runway's estimate, in credits")
    submitted_at: datetime
    model_concurrency: int | None = Field(
        None,
        ge=1,
        description="How many tasks of this model the generator lets run at once when it "
        "submitted this one (its budget; null: no limit known). Added in the same version: "
        "optional; the gateway uses it for queue estimates",
    )


WaitReason = Literal["waiting_for_capacity", "daily_cap_reached", "organization_out_of_credits"]


class GenerationWaiting(EventData):
    """The generator holds a generation back, and why; sent when the reason changes.

    ``daily_cap_reached``: Runway refused the model's next task for the day, ``until`` is when
    the generator expects the cap to let one more through. ``organization_out_of_credits``:
    the organisation's ``creditBalance`` does not cover the task's cost. ``waiting_for_capacity``
    (sent only after one of those): it waits for a free slot again. Not sent for a wait that is
    only a busy slot; ``TaskSubmitted`` ends any wait.
    """

    name: ClassVar[str] = "generation.waiting"

    user_id: str
    model: str
    reason: WaitReason
    until: datetime | None = Field(None, description="When it should be able to go, if known")
    observed_at: datetime


class TaskProgressed(EventData):
    """The Runway task moved (status change or a meaningful progress step)."""

    name: ClassVar[str] = "generation.task-progressed"

    runway_task_id: str
    runway_status: Literal["PENDING", "THROTTLED", "RUNNING"]
    progress: float = Field(ge=0.0, le=1.0, description="0..1")
    estimated_cost_credits: int | None = None
    observed_at: datetime


class VideoReady(EventData):
    """The Runway task succeeded; its output can be fetched (the URLs expire)."""

    name: ClassVar[str] = "generation.video-ready"

    user_id: str
    runway_task_id: str
    output_urls: list[str] = Field(min_length=1, description="Signed, expiring URLs")
    fetched_at: datetime = Field(description="When the URLs were retrieved from Runway")
    cost_credits: int | None = Field(None, description="The task's final cost in credits")


class TaskOutputRejected(EventData):
    """Runway failed the task with ``INTERNAL.BAD_OUTPUT.*``: a new task may succeed.

    Emitted by the poller instead of ``GenerationFailed``; the generator owns what follows:
    it submits attempt ``attempt + 1`` while attempts remain (``TaskSubmitted`` again), and
    emits ``GenerationFailed`` (with the cost of every attempt summed) when they are exhausted.
    Not a terminal event of the generation.
    """

    name: ClassVar[str] = "generation.task-output-rejected"

    user_id: str
    runway_task_id: str
    attempt: int = Field(ge=1, description="The attempt whose task was rejected")
    failure: str = Field(description="Runway's failure text")
    failure_code: str = Field(examples=["INTERNAL.BAD_OUTPUT.CODE01"])
    cost_credits: int = Field(ge=0, description="The rejected task's final cost")
    rejected_at: datetime


class VideoUrlExpired(EventData):
    """Media found the output URL expired; the poller re-retrieves the task for fresh URLs."""

    name: ClassVar[str] = "generation.video-url-expired"

    user_id: str
    runway_task_id: str
    reported_at: datetime
    refreshes: int = Field(
        1,
        ge=1,
        description="fresh URLs media has asked for on this generation, this one included: "
        "the poller answers the first at once and backs off before each further one",
    )


class GenerationCompleted(EventData):
    """The video is stored in vidgen's object store and verified playable."""

    name: ClassVar[str] = "generation.completed"

    user_id: str
    video_key: str = Field(examples=["videos/user-42/0b6f….mp4"])
    thumbnail_key: str | None = Field(None, examples=["videos/user-42/0b6f….jpg"])
    content_type: str = Field("video/mp4")
    size_bytes: int = Field(ge=0)
    sha256: str = Field(description="Hex digest of the stored video")
    duration_seconds: float = Field(ge=0)
    width: int = Field(ge=0)
    height: int = Field(ge=0)
    codec: str = Field(examples=["h264"])
    cost_credits: int | None = None
    completed_at: datetime


class GenerationFailed(EventData):
    """The generation ended in failure; ``error_message`` is the real reason."""

    name: ClassVar[str] = "generation.failed"

    stage: Stage = Field(description="Service that gave up")
    error_code: str = Field(
        description="Stable machine code, e.g. runway_failed, moderation, invalid_video",
        examples=["moderation"],
    )
    error_message: str = Field(description="The real reason (Runway's own text where it has one)")
    user_message: str | None = Field(
        None, description="What to show the user when the real reason must not be shown raw"
    )
    runway_task_id: str | None = None
    runway_failure_code: str | None = Field(None, examples=["SAFETY.INPUT.TEXT"])
    cost_credits: int | None = None
    failed_at: datetime


class GenerationCancelled(EventData):
    """The generation was cancelled (at Runway too, when a task existed)."""

    name: ClassVar[str] = "generation.cancelled"

    stage: Stage
    runway_task_id: str | None = None
    cost_credits: int | None = Field(
        None,
        description="What Runway charged, when a task existed and Runway said (a task "
        "cancelled while running is charged; one cancelled before is refunded: 0)",
    )
    cancelled_at: datetime


ALL_EVENTS: tuple[type[EventData], ...] = (
    GenerationRequested,
    GenerationCancelRequested,
    GenerationWaiting,
    TaskSubmitted,
    TaskProgressed,
    VideoReady,
    VideoUrlExpired,
    TaskOutputRejected,
    GenerationCompleted,
    GenerationFailed,
    GenerationCancelled,
)
