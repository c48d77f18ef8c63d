"""``python -m vidgen_gateway``: the REST API, the projection consumer and the outbox relay."""

from __future__ import annotations

import asyncio

from vidgen_common.runtime import ServiceRuntime
from vidgen_gateway.bootstrap import EMITS, bootstrap
from vidgen_gateway.migrations import MIGRATIONS
from vidgen_gateway.settings import GatewaySettings


async def main() -> None:
    settings = GatewaySettings()
    async with ServiceRuntime(settings, MIGRATIONS, emits=EMITS) as rt:
        await bootstrap(rt, settings)
        await rt.run()


if __name__ == "__main__":
    asyncio.run(main())
