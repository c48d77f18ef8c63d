"""``python -m vidgen_poller``: run the poller until SIGTERM."""

from __future__ import annotations

import asyncio

from vidgen_common.runtime import run_service
from vidgen_poller.bootstrap import EMITS, bootstrap
from vidgen_poller.migrations import MIGRATIONS
from vidgen_poller.settings import PollerSettings


def main() -> None:
    asyncio.run(run_service(PollerSettings(), MIGRATIONS, EMITS, bootstrap))


if __name__ == "__main__":
    main()
