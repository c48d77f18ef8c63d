"""Schemathesis against /openapi.json, in-process on the ASGI app, with a valid token.

Every operation gets a bounded number of generated requests, valid and invalid; each answer
must not be a 5xx and must conform to the schema (status code documented, content type,
headers, body). Schemathesis drives the app on its own event loop (in a thread), so the app
under test gets a connection pool that does not keep connections across loops (NullPool).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from aiokafka.admin import AIOKafkaAdminClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from sqlalchemy import NullPool, text
from sqlalchemy.ext.asyncio import create_async_engine

from vidgen_common.db import session_factory
from vidgen_common.metrics import Metrics
from vidgen_common.uow import UnitOfWork
from vidgen_gateway.api.deps import GatewayDeps
from vidgen_gateway.app import create_app
from vidgen_gateway.auth import SecretVerifier
from vidgen_gateway.changes import LocalChangeFeed

pytestmark = pytest.mark.integration

EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 12}

# Schema-valid requests the API still refuses, for reasons a JSON schema cannot express; each
# refusal is tested on its own (test_api_rejections.py). Everything else keeps the defaults.
CONFIG = """
[[operations]]
include-name = "POST /api/images/upload"
# judged by content: bytes that are no PNG/JPEG/WebP (415), too few or many pixels (422)
checks.positive_data_acceptance.expected-statuses = ["2xx", "413", "415", "422"]

[[operations]]
include-name = "POST /api/videos/generate"
# unknown project (404), a reused Idempotency-Key (409), a model/ratio/duration combination
# Runway refuses (422), the per-user limits (429)
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "409", "422", "429"]

[[operations]]
include-name = "GET /api/videos"
# a cursor this API did not issue
checks.positive_data_acceptance.expected-statuses = ["2xx", "422"]
"""


def build_app(gateway_settings: Any, storage: Any, channel: str) -> Any:
    engine = create_async_engine(
        gateway_settings.db.database_url,
        poolclass=NullPool,
        connect_args={"server_settings": {"search_path": gateway_settings.db_schema}},
    )
    sessions = session_factory(engine)

    async def check_ready() -> dict[str, str]:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        admin = AIOKafkaAdminClient(bootstrap_servers=gateway_settings.kafka.bootstrap_servers)
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()
        return {"database": "ok", "kafka": "ok"}

    deps = GatewayDeps(
        sessions=sessions,
        uow=lambda: UnitOfWork(
            sessions, source="/vidgen/gateway", topic_prefix=gateway_settings.kafka.topic_prefix
        ),
        storage=storage,
        changes=LocalChangeFeed(),
        verifier=SecretVerifier(gateway_settings),
        check_ready=check_ready,
        channel=channel,
        metrics=Metrics("gateway-schemathesis"),
    )
    return create_app(gateway_settings, deps)


def has_inputs(operation: Any) -> bool:
    parts = (operation.path_parameters, operation.query, operation.headers, operation.body)
    return any(len(part) for part in parts)


def run_operation(operation: Any, headers: dict[str, str], **fixed: Any) -> None:
    for mode, examples in EXAMPLES.items():
        if mode is GenerationMode.NEGATIVE and not has_inputs(operation):
            continue  # nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode, **fixed))
        @hypothesis_settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers)

        check()


async def test_api_conforms_to_its_openapi_schema(
    settings: Any,
    storage: Any,
    gateway: Any,
    auth: Callable[[str], dict[str, str]],
    generate: Any,
    feed: Any,
    downstream: Any,
) -> None:
    user = "fuzzer"
    # one real, finished generation of the token's user, so id-taking operations also run
    # on a resource that exists (a finished one: its live stream ends at once)
    gid = await generate(user)
    await feed(downstream(gid, user).completed())
    app = build_app(settings, storage, gateway.deps.channel)
    headers = auth(user)

    def fuzz() -> list[str]:
        config = schemathesis.config.SchemathesisConfig.from_str(CONFIG)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        labels = []
        for result in schema.get_all_operations():
            operation = result.ok()
            labels.append(operation.label)
            run_operation(operation, headers)
            if "{generation_id}" in operation.path:
                run_operation(operation, headers, path_parameters={"generation_id": gid})
        return labels

    labels = await asyncio.to_thread(fuzz)
    assert set(labels) >= {
        "POST /api/images/upload",
        "POST /api/videos/generate",
        "GET /api/videos/status/{generation_id}",
        "GET /api/videos",
        "POST /api/videos/{generation_id}/cancel",
        "GET /api/videos/{generation_id}/events",
        "GET /healthz",
        "GET /readyz",
    }
