"""The notifier's schema: the ordered SQL files beside this module (never edit a released
one: add the next ``NNNN_<name>.sql``)."""

from __future__ import annotations

from vidgen_common.migrations import Migration, load_migrations

MIGRATIONS: tuple[Migration, ...] = load_migrations(__name__, "notifier")
