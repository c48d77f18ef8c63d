"""Structured JSON logs carrying the service, the generation id and the trace id."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

from vidgen_common.telemetry import current_trace_id

generation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "generation_id", default=None
)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if (gid := generation_id_var.get()) is not None:
            entry["generation_id"] = gid
        if (tid := current_trace_id()) is not None:
            entry["trace_id"] = tid
        if isinstance(timings := getattr(record, "timings", None), dict):
            entry["timings"] = timings  # stage times of one piece of work (benchmarks read them)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record to stderr as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
