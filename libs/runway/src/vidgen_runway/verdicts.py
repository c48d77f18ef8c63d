"""What to do about a Runway error or a failed task: the :class:`Verdict`.

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

:func:`classify_failure` judges a ``FAILED`` task's ``failureCode`` here; SDK exceptions are
judged by :mod:`vidgen_runway.sdk`. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MODERATION_USER_MESSAGE = (
    "This video could not be generated because the image or prompt did not pass the "
    "provider's content checks. Try a different image or prompt."
)

BAD_OUTPUT_PREFIX = "INTERNAL.BAD_OUTPUT"
MODERATION_PREFIXES = ("SAFETY.", "INPUT_PREPROCESSING.SAFETY.")


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
