"""The Kafka bus: producer, consumer runner, topic creation."""

from vidgen_common.bus.admin import BrokerAdmin, ensure_topics
from vidgen_common.bus.consumer import ConsumerRunner, Handler, PermanentError
from vidgen_common.bus.producer import KafkaPublisher, TopicsMissing

__all__ = [
    "BrokerAdmin",
    "ConsumerRunner",
    "Handler",
    "KafkaPublisher",
    "PermanentError",
    "TopicsMissing",
    "ensure_topics",
]
