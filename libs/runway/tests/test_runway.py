"""Runway settings, the SDK client factory, and the verdicts on errors and task failures."""

from __future__ import annotations

import json

import httpx
import pytest
from runwayml import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
)

from vidgen_common.errors import ConfigurationError
from vidgen_runway.catalog import estimated_credits
from vidgen_runway.sdk import (
    classify_create_error,
    classify_error,
    create_client,
    retry_after_seconds,
)
from vidgen_runway.settings import SIMULATOR_BASE_URL, SIMULATOR_DEV_KEY, RunwaySettings
from vidgen_runway.verdicts import Verdict, classify_failure

REQUEST = httpx.Request("POST", "https://api.dev.runwayml.com/v1/image_to_video")


def status_error(cls: type, status: int, body: object, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    response = httpx.Response(status, json=body, headers=headers or {}, request=REQUEST)
    return cls(f"Error code: {status} - {body}", response=response, body=body)


def test_without_a_secret_the_simulator_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNWAYML_API_SECRET", raising=False)
    monkeypatch.delenv("RUNWAYML_BASE_URL", raising=False)
    settings = RunwaySettings()
    assert settings.uses_simulator
    assert (settings.api_key, settings.base_url) == (SIMULATOR_DEV_KEY, SIMULATOR_BASE_URL)
    with pytest.raises(ConfigurationError):
        settings.check_safe("production")


def test_the_dev_key_is_the_simulators() -> None:
    from runway_sim.settings import DEFAULT_API_KEY  # tests may import the simulator

    assert SIMULATOR_DEV_KEY == DEFAULT_API_KEY


def test_a_secret_means_runway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNWAYML_API_SECRET", "key_real")
    monkeypatch.delenv("RUNWAYML_BASE_URL", raising=False)
    settings = RunwaySettings()
    assert (settings.api_key, settings.base_url, settings.uses_simulator) == (
        "key_real",
        None,
        False,
    )
    settings.check_safe("production")


async def test_client_has_the_sdks_retries_off() -> None:
    client = create_client(RunwaySettings(runwayml_base_url="http://127.0.0.1:1"))
    try:
        assert client.max_retries == 0
        assert str(client.base_url).startswith("http://127.0.0.1:1")
    finally:
        await client.close()


def test_rate_limit_is_retried_after_what_runway_asks() -> None:
    exc = status_error(
        RateLimitError,
        429,
        {"error": "Too many requests."},
        {"Retry-After": "2", "retry-after-ms": "1500"},
    )
    c = classify_error(exc)
    assert (c.verdict, c.code, c.retry_after_s, c.message) == (
        Verdict.RETRY,
        "runway_rate_limited",
        1.5,
        "Too many requests.",
    )


def test_the_daily_cap_is_permanent() -> None:
    body = {"error": "You have reached the daily generation limit for gen4_turbo (500)."}
    c = classify_error(status_error(RateLimitError, 429, body))
    assert (c.verdict, c.code) == (Verdict.PERMANENT, "runway_daily_limit")


@pytest.mark.parametrize(
    ("cls", "status", "verdict", "code"),
    [
        (BadRequestError, 400, Verdict.PERMANENT, "runway_rejected"),
        (AuthenticationError, 401, Verdict.PERMANENT, "runway_auth"),
        (NotFoundError, 404, Verdict.PERMANENT, "runway_not_found"),
        (InternalServerError, 503, Verdict.RETRY, "runway_unavailable"),
    ],
)
def test_status_errors(cls: type, status: int, verdict: Verdict, code: str) -> None:
    c = classify_error(status_error(cls, status, {"error": "why"}))
    assert (c.verdict, c.code, c.status, c.message) == (verdict, code, status, "why")


def test_validation_issues_are_part_of_the_message() -> None:
    body = {
        "error": "Validation of body failed",
        "issues": [{"path": ["ratio"], "code": "custom", "message": "Invalid enum value"}],
    }
    c = classify_error(status_error(BadRequestError, 400, body))
    assert c.message == "Validation of body failed: ratio: Invalid enum value"


def test_a_connection_never_made_is_safe_to_retry() -> None:
    exc = APIConnectionError(request=REQUEST)
    exc.__cause__ = httpx.ConnectError("refused")
    assert classify_error(exc).verdict is Verdict.RETRY


@pytest.mark.parametrize("cause", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("cut")])
def test_a_lost_answer_is_unknown(cause: Exception) -> None:
    exc = (
        APITimeoutError(REQUEST)
        if isinstance(cause, httpx.TimeoutException)
        else APIConnectionError(request=REQUEST)
    )
    exc.__cause__ = cause
    c = classify_error(exc)
    assert (c.verdict, c.code, c.retryable) == (Verdict.UNKNOWN, "runway_no_response", True)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        ("SAFETY.INPUT.TEXT", Verdict.MODERATION),
        ("SAFETY.OUTPUT.VIDEO", Verdict.MODERATION),
        ("INPUT_PREPROCESSING.SAFETY.TEXT", Verdict.MODERATION),
        ("INTERNAL.BAD_OUTPUT.CODE01", Verdict.BAD_OUTPUT),
        ("INTERNAL", Verdict.PERMANENT),
        ("ASSET.INVALID", Verdict.PERMANENT),
        (None, Verdict.PERMANENT),
    ],
)
def test_task_failure_codes(code: str | None, verdict: Verdict) -> None:
    c = classify_failure(code, "Runway's text")
    assert c.verdict is verdict
    assert c.message == "Runway's text"
    assert c.runway_failure_code == code


def test_retry_after_forms() -> None:
    assert retry_after_seconds(httpx.Headers({"retry-after": "3"})) == 3.0
    assert (
        retry_after_seconds(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) is None
    )
    assert retry_after_seconds(None) is None


def test_estimated_credits() -> None:
    assert estimated_credits("gen4_turbo", 10) == 50
    assert estimated_credits("unknown-model", 5) is None


def _lost(cause: Exception) -> APIConnectionError:
    exc = (
        APITimeoutError(REQUEST)
        if isinstance(cause, httpx.TimeoutException)
        else APIConnectionError(request=REQUEST)
    )
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "verdict", "code"),
    [
        (status_error(RateLimitError, 429, {"error": "slow down"}), Verdict.RETRY,
         "runway_rate_limited"),
        (status_error(InternalServerError, 502, {"error": "bad gateway"}), Verdict.RETRY,
         "runway_unavailable"),
        (status_error(InternalServerError, 503, {"error": "overloaded"}), Verdict.RETRY,
         "runway_unavailable"),
        (status_error(BadRequestError, 400, {"error": "no"}), Verdict.PERMANENT,
         "runway_rejected"),
        (status_error(RateLimitError, 429, {"error": "daily limit reached"}), Verdict.PERMANENT,
         "runway_daily_limit"),
        (_lost(httpx.ConnectError("refused")), Verdict.RETRY, "runway_unreachable"),
        (_lost(httpx.ConnectTimeout("slow")), Verdict.RETRY, "runway_unreachable"),
        (_lost(httpx.PoolTimeout("busy")), Verdict.RETRY, "runway_unreachable"),
        (status_error(InternalServerError, 500, {"error": "oops"}), Verdict.UNKNOWN,
         "runway_unavailable"),
        (status_error(InternalServerError, 504, "<html>504</html>"), Verdict.UNKNOWN,
         "runway_unavailable"),
        (status_error(APIStatusError, 408, {"error": "timeout"}), Verdict.UNKNOWN,
         "runway_unavailable"),
        (_lost(httpx.ReadTimeout("slow")), Verdict.UNKNOWN, "runway_no_response"),
        (_lost(httpx.RemoteProtocolError("cut")), Verdict.UNKNOWN, "runway_no_response"),
        (APIResponseValidationError(httpx.Response(200, request=REQUEST), body="{"),
         Verdict.UNKNOWN, "runway_bad_response"),
        (json.JSONDecodeError("Expecting value", '{"id": "ab', 10), Verdict.UNKNOWN,
         "runway_bad_response"),
        (RuntimeError("anything else"), Verdict.UNKNOWN, "runway_bad_response"),
    ],
)  # fmt: skip
def test_a_create_is_retried_only_on_proof_that_nothing_was_created(
    exc: BaseException, verdict: Verdict, code: str
) -> None:
    c = classify_create_error(exc)
    assert (c.verdict, c.code) == (verdict, code)


def test_reads_keep_retrying_what_a_create_must_not() -> None:
    for exc in (
        status_error(InternalServerError, 500, {"error": "oops"}),
        APIResponseValidationError(httpx.Response(200, request=REQUEST), body="{"),
    ):
        assert classify_error(exc).retryable
