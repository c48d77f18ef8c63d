"""The Kafka bus: producer, consumer runner, topic creation."""

from vidgen_common.bus.admin import ensure_topics
from vidgen_common.bus.consumer import ConsumerRunner, Handler, PermanentError
from vidgen_common.bus.producer import KafkaPublisher

__all__ = ["ConsumerRunner", "Handler", "KafkaPublisher", "PermanentError", "ensure_topics"]
