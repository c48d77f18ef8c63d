"""A test session deletes the topics under the prefixes it handed out, and only those: a
broker shared with other runs keeps theirs (real broker)."""

from __future__ import annotations

import pytest

from vidgen_common.bus import ensure_topics
from vidgen_common.settings import KafkaSettings
from vidgen_testing import topics

pytestmark = pytest.mark.integration


async def test_only_the_remembered_prefixes_topics_are_deleted(kafka_bootstrap: str) -> None:
    mine, other = topics.prefix(), f"other{topics.prefix()}"
    names = {f"{p}{n}" for p in (mine, other) for n in ("a", "b")}
    await ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap, partitions=1), names)
    assert names <= await topics.list_topics(kafka_bootstrap)

    deleted = await topics.delete_mine(kafka_bootstrap)

    left = await topics.list_topics(kafka_bootstrap)
    assert deleted >= 2
    assert not {f"{mine}a", f"{mine}b"} & left
    assert {f"{other}a", f"{other}b"} <= left
    await topics.delete_topics(kafka_bootstrap, lambda t: t.startswith(other))
    assert not {f"{other}a", f"{other}b"} & await topics.list_topics(kafka_bootstrap)


async def test_an_unreachable_broker_is_logged_not_raised() -> None:
    assert await topics.delete_topics("127.0.0.1:9", lambda t: True) == 0
