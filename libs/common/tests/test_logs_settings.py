"""Logs are JSON with generation and trace ids; dev secrets are refused in production."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from vidgen_common.errors import ConfigurationError
from vidgen_common.logs import JsonFormatter, generation_id_var
from vidgen_common.settings import S3Settings, ServiceSettings


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
