"""Every service's migrations keep the ids its databases recorded (``schema_migrations``):
a deployed database migrates forward, never again from the start."""

from __future__ import annotations

from vidgen_gateway.migrations import MIGRATIONS as GATEWAY
from vidgen_generator.migrations import MIGRATIONS as GENERATOR
from vidgen_media.migrations import MIGRATIONS as MEDIA
from vidgen_notifier.migrations import MIGRATIONS as NOTIFIER
from vidgen_poller.migrations import MIGRATIONS as POLLER

RECORDED = [
    ("gateway", 1, "projects, generations, idempotency keys"),
    ("generator", 1, "submissions and cancels"),
    ("generator", 2, "intent owners, instance heartbeats, late tasks"),
    ("poller", 1, "tracked tasks and cancels"),
    ("poller", 2, "when Runway last answered about a task"),
    ("media", 1, "transfers"),
    ("media", 2, "transfer leases and re-drives"),
    ("notifier", 1, "endpoints, deliveries and projection"),
]


def test_the_recorded_migrations_are_still_the_first_ones() -> None:
    every = (*GATEWAY, *GENERATOR, *POLLER, *MEDIA, *NOTIFIER)
    found = [(m.component, m.version, m.name) for m in every]
    assert found[: len(RECORDED)] == RECORDED or all(r in found for r in RECORDED)
    for migrations in (GATEWAY, GENERATOR, POLLER, MEDIA, NOTIFIER):
        assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
        assert all(m.statements for m in migrations)
