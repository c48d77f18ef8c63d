"""Runway, as every service that talks to it sees it: settings, the SDK client, and verdicts.

**Settings.** :class:`RunwaySettings` reads ``RUNWAYML_API_SECRET`` and ``RUNWAYML_BASE_URL``
(the SDK's own variable names). Without a secret the services talk to the Runway simulator
(``http://127.0.0.1:8100`` unless ``RUNWAYML_BASE_URL`` says otherwise) with the simulator's
development key; in production a missing secret is refused by :meth:`RunwaySettings.check_safe`.

**Client.** :func:`create_client` builds the official ``AsyncRunwayML`` with the SDK's own
retries off by default (``max_retries=0``): the SDK retries ``POST /v1/image_to_video`` without
an idempotency key, so a retried create can be a second, paid task. Services retry on their
own terms, with :func:`backoff_delay`.

**Verdicts.** :func:`classify_error` turns an SDK exception into a :class:`Classified` verdict,
and :func:`classify_failure` does the same for a ``FAILED`` task's ``failureCode``:

=============  ==========================================================================
verdict        meaning and typical causes
=============  ==========================================================================
``retry``      transient, try again later: 429 rate limit (honour ``retry_after_s``), 5xx,
               a connection that was never established (nothing reached Runway)
``permanent``  retrying cannot help: 400/422 (invalid request, not enough credits), 401/403
               (key), 404, 409, the daily generation cap (a 429 that names it), other task
               failure codes (``ASSET.*``, ``INPUT_PREPROCESSING.INTERNAL``, ``INTERNAL``)
``unknown``    the request may have been processed but its answer was lost (read timeout,
               connection dropped after sending). Safe to retry for reads and deletes;
               for a create it means "a task may exist that we do not know of"
``moderation`` ``SAFETY.*`` / ``INPUT_PREPROCESSING.SAFETY.*``: never retried; shown to the
               user as :data:`MODERATION_USER_MESSAGE`, the code is kept
``bad_output`` ``INTERNAL.BAD_OUTPUT.*``: a new task may succeed (resubmission)
=============  ==========================================================================
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from runwayml import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncRunwayML,
)

from vidgen_common.errors import ConfigurationError, VidgenError
from vidgen_common.metrics import Metrics

SIMULATOR_BASE_URL = "http://127.0.0.1:8100"
# The simulator's development key: the default of `api_keys` in tools/runway_sim's settings
# (copied, not imported: production code never imports the simulator; a test keeps them equal).
SIMULATOR_DEV_KEY = "key_simulator_dev_only_0000000000000000"

MODERATION_USER_MESSAGE = (
    "This video could not be generated because the image or prompt did not pass the "
    "provider's content checks. Try a different image or prompt."
)

# Runway's published prices, credits per second of output video (estimates only: the task's
# own `estimatedCost` / `cost` is the truth).
CREDITS_PER_SECOND: dict[str, int] = {
    "gen4_turbo": 5,
    "gen4.5": 12,
    "veo3.1": 40,
    "veo3.1_fast": 15,
}

BAD_OUTPUT_PREFIX = "INTERNAL.BAD_OUTPUT"
MODERATION_PREFIXES = ("SAFETY.", "INPUT_PREPROCESSING.SAFETY.")


class RunwaySettings(BaseSettings):
    """How to reach Runway (or the simulator). Environment names are the SDK's own."""

    model_config = SettingsConfigDict(extra="ignore")

    runwayml_api_secret: SecretStr | None = Field(
        None, description="Runway API key; without it the simulator is used"
    )
    runwayml_base_url: str | None = Field(
        None, description="API base URL (default: Runway's, or the local simulator without a key)"
    )
    runway_timeout_s: float = Field(
        30.0, gt=0, description="Timeout of one Runway call (bounds the create's unknown window)"
    )
    runway_connect_timeout_s: float = Field(5.0, gt=0, description="TCP connect timeout")

    @property
    def uses_simulator(self) -> bool:
        return self.runwayml_api_secret is None

    @property
    def api_key(self) -> str:
        if self.runwayml_api_secret is None:
            return SIMULATOR_DEV_KEY
        return self.runwayml_api_secret.get_secret_value()

    @property
    def base_url(self) -> str | None:
        """The base URL to use; None leaves the SDK's default (Runway's API)."""
        if self.runwayml_base_url:
            return self.runwayml_base_url
        return SIMULATOR_BASE_URL if self.uses_simulator else None

    def check_safe(self, env: str) -> None:
        """Refuse to run production against the simulator."""
        if env == "production" and self.uses_simulator:
            raise ConfigurationError("RUNWAYML_API_SECRET is not set; production needs a real key")


class SdkAdapter:
    """Base of the services' adapters over the SDK client: counts every call's outcome in
    ``vidgen_runway_calls_total`` and turns SDK exceptions into :class:`RunwayCallError`."""

    def __init__(self, client: AsyncRunwayML, metrics: Metrics | None = None) -> None:
        self._client = client
        self._metrics = metrics

    async def close(self) -> None:
        await self._client.close()

    def _failed(self, operation: str, exc: Exception) -> RunwayCallError:
        classified = classify_error(exc)
        self._count(operation, classified.code)
        return RunwayCallError(classified)

    def _count(self, operation: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.runway_calls.labels(operation, outcome).inc()


def create_client(
    settings: RunwaySettings, *, max_retries: int = 0, timeout_s: float | None = None
) -> AsyncRunwayML:
    """The official async client; ``max_retries=0`` unless a caller knows its call is safe."""
    timeout = httpx.Timeout(
        timeout_s or settings.runway_timeout_s, connect=settings.runway_connect_timeout_s
    )
    return AsyncRunwayML(
        api_key=settings.api_key,
        base_url=settings.base_url,
        max_retries=max_retries,
        timeout=timeout,
    )


class Verdict(StrEnum):
    RETRY = "retry"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"
    MODERATION = "moderation"
    BAD_OUTPUT = "bad_output"


@dataclass(frozen=True)
class Classified:
    """What to do about a Runway error or task failure.

    ``code`` is vidgen's stable error code (``GenerationFailed.error_code``); ``message`` is
    Runway's own text where it gave one; ``status`` the HTTP status, if any.
    """

    verdict: Verdict
    code: str
    message: str
    retry_after_s: float | None = None
    status: int | None = None
    runway_failure_code: str | None = None

    @property
    def retryable(self) -> bool:
        """Safe to send the same request again (reads, deletes, uploads)."""
        return self.verdict in (Verdict.RETRY, Verdict.UNKNOWN)


class RunwayCallError(VidgenError):
    """A Runway call failed; ``classified`` says what to do. Raised by the services' adapters."""

    def __init__(self, classified: Classified) -> None:
        super().__init__(f"{classified.code}: {classified.message}")
        self.classified = classified


def runway_message(body: object, fallback: str) -> str:
    """Runway's human-readable ``error`` (plus validation issues) from an error body."""
    if isinstance(body, dict):
        error = body.get("error")
        text = str(error) if error else fallback
        issues = body.get("issues")
        if isinstance(issues, list) and issues:
            details = "; ".join(_issue_text(i) for i in issues[:5])
            text = f"{text}: {details}"
        return text
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return fallback


def _issue_text(issue: Any) -> str:
    if not isinstance(issue, dict):
        return str(issue)
    path = ".".join(str(p) for p in issue.get("path") or [])
    message = str(issue.get("message", ""))
    return f"{path}: {message}" if path else message


def retry_after_seconds(headers: httpx.Headers | None) -> float | None:
    """Seconds asked by ``retry-after-ms`` or ``Retry-After`` (seconds form), if any."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / scale
        except ValueError:
            continue  # an HTTP date: rare at Runway; fall back to our own backoff
        if 0 <= value <= 3600:
            return value
    return None


def _is_daily_cap(message: str) -> bool:
    lowered = message.lower()
    return "daily" in lowered and "limit" in lowered


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def classify_error(exc: BaseException) -> Classified:
    """The verdict on an exception raised by an SDK call (see the module docstring)."""
    if isinstance(exc, RunwayCallError):
        return exc.classified
    if isinstance(exc, APIStatusError):
        return _classify_status(exc)
    if isinstance(exc, APIConnectionError):
        cause = exc.__cause__
        if isinstance(cause, _NOT_SENT):
            return Classified(Verdict.RETRY, "runway_unreachable", f"Runway unreachable: {cause!r}")
        what = "timed out" if isinstance(exc, APITimeoutError) else "lost the connection"
        return Classified(
            Verdict.UNKNOWN, "runway_no_response", f"Runway {what} before answering: {cause!r}"
        )
    if isinstance(exc, APIError):  # e.g. a response that does not match the schema
        return Classified(Verdict.RETRY, "runway_bad_response", exc.message)
    return Classified(Verdict.RETRY, "runway_client_error", repr(exc))


def _classify_status(exc: APIStatusError) -> Classified:
    status = exc.status_code
    message = runway_message(exc.body, f"HTTP {status}")
    if status == 429:
        if _is_daily_cap(message):
            return Classified(Verdict.PERMANENT, "runway_daily_limit", message, status=status)
        after = retry_after_seconds(exc.response.headers)
        return Classified(Verdict.RETRY, "runway_rate_limited", message, after, status)
    if status >= 500 or status == 408:
        after = retry_after_seconds(exc.response.headers)
        return Classified(Verdict.RETRY, "runway_unavailable", message, after, status)
    code = {
        401: "runway_auth",
        403: "runway_forbidden",
        404: "runway_not_found",
        409: "runway_conflict",
    }.get(status, "runway_rejected")
    return Classified(Verdict.PERMANENT, code, message, status=status)


def classify_failure(failure_code: str | None, failure: str) -> Classified:
    """The verdict on a ``FAILED`` task, from its ``failureCode`` and ``failure`` text."""
    code = failure_code or ""
    if code.startswith(MODERATION_PREFIXES):
        return Classified(Verdict.MODERATION, "moderation", failure, runway_failure_code=code)
    if code == BAD_OUTPUT_PREFIX or code.startswith(BAD_OUTPUT_PREFIX + "."):
        return Classified(
            Verdict.BAD_OUTPUT, "runway_bad_output", failure, runway_failure_code=code
        )
    return Classified(Verdict.PERMANENT, "runway_failed", failure, runway_failure_code=failure_code)


def backoff_delay(
    tries: int,
    *,
    base_s: float = 1.0,
    cap_s: float = 60.0,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before try number ``tries + 1`` (``tries`` ≥ 1 failed so far).

    Exponential with "equal jitter" (half fixed, half random, so replicas spread out), never
    sooner than Runway's ``Retry-After`` (plus up to 20 % jitter, so a storm's retries do not
    all land in the same instant).
    """
    draw = rng.random if rng is not None else random.random
    exp = min(cap_s, base_s * 2.0 ** max(0, tries - 1))
    delay = exp / 2 + draw() * exp / 2
    if retry_after_s is not None:
        delay = max(delay, retry_after_s * (1.0 + 0.2 * draw()))
    return delay


def estimated_credits(model: str, duration_s: int) -> int | None:
    """Runway's published price of a video (None for a model without a known price)."""
    rate = CREDITS_PER_SECOND.get(model)
    return None if rate is None else rate * duration_s
