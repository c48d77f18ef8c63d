"""``python -m vidgen_poller``: run the poller until SIGTERM."""

from __future__ import annotations

import asyncio

from vidgen_common.runtime import ServiceRuntime
from vidgen_poller.bootstrap import EMITS, bootstrap
from vidgen_poller.models import MIGRATIONS
from vidgen_poller.settings import PollerSettings


async def main() -> None:
    settings = PollerSettings()
    async with ServiceRuntime(settings, MIGRATIONS, emits=EMITS) as rt:
        poller = bootstrap(rt, settings)
        try:
            await rt.run()
        finally:
            await poller.close()


if __name__ == "__main__":
    asyncio.run(main())
