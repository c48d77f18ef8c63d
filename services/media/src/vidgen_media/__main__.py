"""``python -m vidgen_media``: run the media service until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from vidgen_common.runtime import run_service
from vidgen_media.bootstrap import EMITS, bootstrap
from vidgen_media.migrations import MIGRATIONS
from vidgen_media.settings import MediaSettings


def main() -> None:
    asyncio.run(run_service(MediaSettings(), MIGRATIONS, EMITS, bootstrap))


if __name__ == "__main__":
    main()
