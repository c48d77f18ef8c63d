"""Logs are JSON with generation and trace ids; settings refuse what is unsafe or incomplete."""

from __future__ import annotations

import json
import logging
import ssl

import pytest
from opentelemetry.sdk.trace import TracerProvider

from vidgen_common.errors import ConfigurationError
from vidgen_common.logs import JsonFormatter, generation_id_var
from vidgen_common.settings import KafkaSettings, S3Settings, ServiceSettings


def test_log_lines_are_json_with_generation_and_trace_ids() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    tracer = TracerProvider().get_tracer("t")
    token = generation_id_var.set("g-7")
    try:
        with tracer.start_as_current_span("s") as span:
            line = json.loads(JsonFormatter("media").format(record))
            trace_id = format(span.get_span_context().trace_id, "032x")
    finally:
        generation_id_var.reset(token)
    assert line["msg"] == "hello world"
    assert line["service"] == "media"
    assert line["generation_id"] == "g-7"
    assert line["trace_id"] == trace_id


def test_development_s3_secret_is_refused_in_production() -> None:
    ServiceSettings(env="development").check_safe()
    with pytest.raises(ConfigurationError, match="S3_SECRET_KEY"):
        ServiceSettings(env="production").check_safe()
    ServiceSettings(env="production", s3=S3Settings(secret_key="a-real-one")).check_safe()  # type: ignore[arg-type]


def test_kafka_client_options_default_to_plaintext() -> None:
    options = KafkaSettings(bootstrap_servers="k:9092").client_options()
    assert options["security_protocol"] == "PLAINTEXT"
    assert options["bootstrap_servers"] == "k:9092"
    assert "ssl_context" not in options
    assert "sasl_plain_username" not in options


def test_kafka_sasl_over_tls_passes_credentials_and_a_tls_context() -> None:
    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_username="vidgen",
        sasl_password="s3cret",  # type: ignore[arg-type]
    )
    options = settings.client_options()
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("vidgen", "s3cret")


def test_kafka_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="KAFKA_SASL_USERNAME"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT").client_options()


async def test_a_consumers_fetch_bound_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local broker answers a fetch only when its bound has passed: the notifier runs with
    a short one (scripts/run.py), every other consumer keeps Kafka's 500 ms."""
    from vidgen_common.bus import ConsumerRunner

    async def bound(settings: KafkaSettings) -> int:
        runner = ConsumerRunner(settings, group_id="g", handlers={}, dead_letters=None)
        consumer = runner._new_consumer()
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    assert await bound(KafkaSettings()) == 500
    monkeypatch.setenv("KAFKA_FETCH_MAX_WAIT_MS", "50")
    assert await bound(KafkaSettings()) == 50
    monkeypatch.setenv("KAFKA_FETCH_MAX_WAIT_MS", "5")
    with pytest.raises(ValueError, match="fetch_max_wait_ms"):
        KafkaSettings()
