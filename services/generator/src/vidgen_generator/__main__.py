"""``python -m vidgen_generator``: run the generator until SIGTERM."""

from __future__ import annotations

import asyncio

from vidgen_common.runtime import run_service
from vidgen_generator.bootstrap import EMITS, bootstrap
from vidgen_generator.migrations import MIGRATIONS
from vidgen_generator.settings import GeneratorSettings


def main() -> None:
    asyncio.run(run_service(GeneratorSettings(), MIGRATIONS, EMITS, bootstrap))


if __name__ == "__main__":
    main()
