"""Wiring: the notifier composed on a :class:`ServiceRuntime` (the only module that names the
concrete adapters: the HTTP sender, the object store that presigns links, the vault).

    run_service(NotifierSettings(), MIGRATIONS, EMITS, bootstrap)  # see __main__

The runtime runs, until SIGTERM: ``VIDGEN_CONSUMERS`` consumers of one group (``notifier``,
:mod:`vidgen_notifier.handlers`), the delivery loop (:mod:`vidgen_notifier.deliverer`) and,
on ``VIDGEN_HTTP_PORT``, the webhooks API with ``/healthz``, ``/readyz``, ``/metrics``. The
notifier emits no events.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from vidgen_common.auth import build_verifier
from vidgen_common.events import EventData
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.storage import MinioStorage, Storage
from vidgen_notifier.api import create_app
from vidgen_notifier.deliverer import Deliverer
from vidgen_notifier.endpoints import Webhooks
from vidgen_notifier.handlers import CONSUMER, NotifierHandlers
from vidgen_notifier.metrics import NotifierMetrics
from vidgen_notifier.sender import HttpSender, Sender
from vidgen_notifier.settings import NotifierSettings
from vidgen_notifier.vault import Vault, signing_key

EMITS: tuple[type[EventData], ...] = ()


@dataclass
class Notifier:
    app: FastAPI
    handlers: NotifierHandlers
    deliverer: Deliverer
    webhooks: Webhooks
    metrics: NotifierMetrics
    _http: HttpSender | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


def presigning_storage(settings: NotifierSettings) -> MinioStorage:
    """The object store, for presigning only (signed for ``S3_PUBLIC_ENDPOINT`` when set)."""
    return MinioStorage(settings.s3)


def bootstrap(
    rt: ServiceRuntime,
    settings: NotifierSettings,
    *,
    sender: Sender | None = None,
    storage: Storage | None = None,
) -> Notifier:
    """Register the notifier's consumers, delivery loop and API on ``rt``."""
    metrics = NotifierMetrics(rt.metrics.registry)
    http = None
    if sender is None:
        http = HttpSender(settings.allowed_targets, settings.webhook_timeout_s)
        sender = http
    vault = Vault(settings.webhook_secret_key.get_secret_value())
    key = signing_key(settings.webhook_signing_key.get_secret_value())
    deliverer = Deliverer(
        rt.sessions,
        sender,
        storage if storage is not None else presigning_storage(settings),
        vault,
        key,
        settings,
        metrics,
        tracer=rt.tracer,
    )
    handlers = NotifierHandlers(rt.uow, wake=deliverer.wake.set)
    for _ in range(settings.consumers):  # one group: the partitions are shared between them
        rt.add_consumer(settings.kafka.topic_prefix + CONSUMER, handlers.table())
    rt.add_loop("deliveries", deliverer.run)
    webhooks = Webhooks(rt.sessions, vault, settings, wake=deliverer.wake.set)
    app = create_app(
        webhooks,
        build_verifier(settings),
        key,
        service=settings.service_name,
        check_ready=rt.check_ready,
        metrics=rt.metrics,
    )
    rt.serve(app)
    return Notifier(app, handlers, deliverer, webhooks, metrics, http)
