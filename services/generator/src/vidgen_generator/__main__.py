"""``python -m vidgen_generator``: run the generator until SIGTERM."""

from __future__ import annotations

import asyncio

from vidgen_common.runtime import ServiceRuntime
from vidgen_generator.bootstrap import EMITS, bootstrap
from vidgen_generator.models import MIGRATIONS
from vidgen_generator.settings import GeneratorSettings


async def main() -> None:
    settings = GeneratorSettings()
    async with ServiceRuntime(settings, MIGRATIONS, emits=EMITS) as rt:
        generator = bootstrap(rt, settings)
        try:
            await rt.run()
        finally:
            await generator.close()


if __name__ == "__main__":
    asyncio.run(main())
