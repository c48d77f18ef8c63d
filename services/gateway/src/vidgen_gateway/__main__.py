"""``python -m vidgen_gateway``: the REST API, the projection consumer and the outbox relay."""

from __future__ import annotations

import asyncio

from vidgen_common.runtime import run_service
from vidgen_gateway.bootstrap import EMITS, bootstrap
from vidgen_gateway.migrations import MIGRATIONS
from vidgen_gateway.settings import GatewaySettings


def main() -> None:
    asyncio.run(run_service(GatewaySettings(), MIGRATIONS, EMITS, bootstrap))


if __name__ == "__main__":
    main()
