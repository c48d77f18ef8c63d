"""A service process that runs only its outbox relay (``VIDGEN_ROLE=relay``), configured from
the environment like any service: the tests start several, then kill or pause one."""

from __future__ import annotations

import asyncio

from vidgen_common.events import GenerationCancelRequested
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.settings import ServiceSettings


async def main() -> None:
    async with ServiceRuntime(ServiceSettings(), emits=[GenerationCancelRequested]) as rt:
        await rt.run()


if __name__ == "__main__":
    asyncio.run(main())
