"""Removing the topics a test run or a benchmark made on a shared broker.

Every test takes a topic prefix of its own (:func:`prefix`) and every benchmark one of its
run, so the local broker kept each one's topics after it ended. tansu slows down with them:
``bench/webhooks.py`` measured the delivery delay's p95 at 573-867 ms on a stack holding 2138
topics of earlier runs and 109-163 ms right after the same stack started with none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from aiokafka.admin import AIOKafkaAdminClient

from vidgen_testing.helpers import unique

log = logging.getLogger(__name__)

_MINE: set[str] = set()  # the prefixes this process handed out or was told of


def prefix(base: str = "t") -> str:
    """A fresh topic prefix (``t<10 hex>.``), remembered for :func:`delete_mine`."""
    return remember(unique(base) + ".")


def remember(found: str) -> str:
    """Remember a topic prefix this process's tests use, for :func:`delete_mine`."""
    _MINE.add(found)
    return found


async def delete_mine(bootstrap: str) -> int:
    """Delete the topics under the prefixes remembered here: a test session's own, never
    those of another run sharing the broker."""
    mine = tuple(_MINE)
    if not mine:
        return 0
    return await delete_topics(bootstrap, lambda t: t.startswith(mine))


async def list_topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def delete_topics(
    bootstrap: str, wanted: Callable[[str], bool], *, keep: Collection[str] = ()
) -> int:
    """Delete the topics for which ``wanted`` is true, except ``keep``; how many. A broker
    that cannot be reached or refuses is logged, never raised: cleaning up must not fail the
    run it follows."""
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            doomed = [t for t in await admin.list_topics() if wanted(t) and t not in keep]
            for i in range(0, len(doomed), 100):
                await admin.delete_topics(doomed[i : i + 100])
            return len(doomed)
        finally:
            await admin.close()
    except Exception as exc:
        log.warning("topics not deleted on %s: %r", bootstrap, exc)
        return 0
