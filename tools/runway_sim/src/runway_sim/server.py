"""Running the simulator under uvicorn (used by `__main__` and `testing`)."""

from __future__ import annotations

import logging

import uvicorn

from runway_sim.app import create_app
from runway_sim.errors import DropConnection
from runway_sim.settings import Settings


class _HideInjectedDrops(logging.Filter):
    """uvicorn logs every exception that ends a response; injected cuts are not errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, DropConnection):
                return False
            if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            else:
                exc = exc.__cause__ or exc.__context__
        return True


def install_log_filter() -> None:
    """Idempotently hide injected connection drops from uvicorn's error log."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideInjectedDrops) for f in logger.filters):
        logger.addFilter(_HideInjectedDrops())


def build_server(settings: Settings) -> uvicorn.Server:
    """A uvicorn server for a fresh app on `settings.host:settings.port` (not started)."""
    install_log_filter()
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=3,
        timeout_keep_alive=30,
    )
    return uvicorn.Server(config)
