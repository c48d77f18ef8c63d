"""``python -m vidgen_media``: run the media service until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from vidgen_media.bootstrap import media_service
from vidgen_media.settings import MediaSettings


async def run(settings: MediaSettings) -> None:
    async with media_service(settings) as rt:
        await rt.run()


def main() -> None:
    asyncio.run(run(MediaSettings()))


if __name__ == "__main__":
    main()
