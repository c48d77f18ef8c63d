"""``python -m vidgen_notifier``: run the notifier until SIGTERM."""

from __future__ import annotations

import asyncio

from vidgen_common.runtime import run_service
from vidgen_notifier.bootstrap import EMITS, bootstrap
from vidgen_notifier.migrations import MIGRATIONS
from vidgen_notifier.settings import NotifierSettings


def main() -> None:
    asyncio.run(run_service(NotifierSettings(), MIGRATIONS, EMITS, bootstrap))


if __name__ == "__main__":
    main()
