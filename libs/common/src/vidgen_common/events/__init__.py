"""Events: the models every service shares, and their CloudEvents Kafka binding."""

from vidgen_common.events.catalog import DEFAULT_CATALOG, Catalog, Upcaster
from vidgen_common.events.envelope import Envelope, decode, dlq_topic, encode, topic_for
from vidgen_common.events.models import (
    ALL_EVENTS,
    EventData,
    GenerationCancelled,
    GenerationCancelRequested,
    GenerationCompleted,
    GenerationFailed,
    GenerationRequested,
    GenerationWaiting,
    TaskOutputRejected,
    TaskProgressed,
    TaskSubmitted,
    VideoReady,
    VideoUrlExpired,
)

__all__ = [
    "ALL_EVENTS",
    "DEFAULT_CATALOG",
    "Catalog",
    "Envelope",
    "EventData",
    "GenerationCancelRequested",
    "GenerationCancelled",
    "GenerationCompleted",
    "GenerationFailed",
    "GenerationRequested",
    "GenerationWaiting",
    "TaskOutputRejected",
    "TaskProgressed",
    "TaskSubmitted",
    "Upcaster",
    "VideoReady",
    "VideoUrlExpired",
    "decode",
    "dlq_topic",
    "encode",
    "topic_for",
]
