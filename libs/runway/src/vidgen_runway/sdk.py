"""The official Runway SDK, as the services that call Runway use it: client and verdicts.

**Client.** :func:`create_client` builds the official ``AsyncRunwayML`` with the SDK's own
retries off by default (``max_retries=0``): the SDK retries ``POST /v1/image_to_video`` without
an idempotency key, so a retried create can be a second, paid task. Services retry on their
own terms, with :func:`vidgen_common.backoff.backoff_delay`. :class:`SdkAdapter` is the base of
the services' adapters: it counts every call and turns SDK exceptions into
:class:`~vidgen_runway.errors.RunwayCallError`.

**Verdicts.** :func:`classify_error` turns an SDK exception of a call that is safe to repeat
(a read, a delete, an upload) into a :class:`~vidgen_runway.verdicts.Classified` verdict (the
verdicts are tabled in :mod:`vidgen_runway.verdicts`); :func:`classify_create_error` does the
same for ``POST /v1/image_to_video``, stricter:

**A create is retried only on proof that nothing was created.** A task is charged when
Runway creates it, and an answer can be lost or garbled after that. So for a create:

- ``retry``: a connection that was never established (connect error or timeout, no pooled
  connection free), 429 (not the daily cap), 502 and 503 (Runway's load shedding);
- ``permanent``: every other 4xx but 408 (the request was refused: nothing was created);
- ``unknown``: everything else: 500, 504, 408, any other 5xx, a read timeout, a connection
  dropped after the request was sent, a 2xx whose body cannot be read or validated (the
  SDK's ``APIResponseValidationError``, a ``JSONDecodeError``, a missing id), and any other
  exception. The task may exist: the caller applies its unknown-submission policy.

This is the one module of vidgen_runway that imports the SDK (the ``sdk`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from runwayml import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncRunwayML,
)

from vidgen_common.metrics import Metrics
from vidgen_runway.errors import RunwayCallError
from vidgen_runway.settings import RunwaySettings
from vidgen_runway.verdicts import Classified, Verdict


class SdkAdapter:
    """Base of the services' adapters over the SDK client: counts every call's outcome in
    ``vidgen_runway_calls_total`` and turns SDK exceptions into :class:`RunwayCallError`."""

    def __init__(self, client: AsyncRunwayML, metrics: Metrics | None = None) -> None:
        self._client = client
        self._metrics = metrics

    async def close(self) -> None:
        await self._client.close()

    def _failed(
        self,
        operation: str,
        exc: BaseException,
        classify: Callable[[BaseException], Classified] | None = None,
    ) -> RunwayCallError:
        """``exc`` as a counted :class:`RunwayCallError` (``classify``: default
        :func:`classify_error`; creates pass :func:`classify_create_error`)."""
        classified = (classify or classify_error)(exc)
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


# Statuses of a create that prove nothing was created although they are not final: 429 (the
# rate limit; the daily cap is told apart by its message) and Runway's load shedding.
_CREATE_RETRY_STATUSES = frozenset({429, 502, 503})


def classify_create_error(exc: BaseException) -> Classified:
    """The verdict on an exception raised by ``image_to_video.create`` (see the module doc):
    only an answer that proves no task was created is ``retry`` or ``permanent``."""
    if isinstance(exc, RunwayCallError):
        return exc.classified
    if isinstance(exc, APIStatusError):
        status = exc.status_code
        c = _classify_status(exc)
        if status in _CREATE_RETRY_STATUSES or (400 <= status < 500 and status != 408):
            return c
        return Classified(
            Verdict.UNKNOWN,
            c.code,
            f"Runway answered HTTP {status} to the create: {c.message}",
            status=status,
        )
    if isinstance(exc, APIConnectionError):
        # retry when the connection was never made, else unknown (timed out, or cut after the
        # request was sent)
        return classify_error(exc)
    if isinstance(exc, APIError):  # a 2xx whose body does not match the schema
        return Classified(
            Verdict.UNKNOWN, "runway_bad_response", f"unreadable answer to the create: {exc}"
        )
    return Classified(
        Verdict.UNKNOWN, "runway_bad_response", f"unreadable answer to the create: {exc!r}"
    )


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
