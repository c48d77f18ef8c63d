"""The SQL of admission agrees with the statuses and with the schema's partial index."""

from __future__ import annotations

from vidgen_gateway import store
from vidgen_gateway.migrations import MIGRATIONS
from vidgen_gateway.models import TERMINAL, Status


def test_the_in_flight_statuses_of_the_sql_are_the_non_terminal_ones() -> None:
    in_flight = "('queued', 'generating', 'processing')"
    assert in_flight == "(" + ", ".join(f"'{s.value}'" for s in Status if s not in TERMINAL) + ")"
    accept = next(st for m in MIGRATIONS for st in m.statements if "accept_generation(" in st)
    assert f"status IN {in_flight}" in accept
    assert "accept_generation(" in str(store._ACCEPT)
    assert any(f"WHERE status IN {in_flight}" in st for m in MIGRATIONS for st in m.statements)
