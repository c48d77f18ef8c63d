"""Diagnosis only, never the judge: what the services' own tables say (read-only).

For a suspect generation: the generator's submission rows, and every outbox row about it in
each service's schema with whether it was marked published and whether that CloudEvent id is
on the broker now (marked published but absent: the broker lost it; unpublished: a relay is
behind or stuck). And those two counts for each service's whole outbox (retained rows).
"""

from __future__ import annotations

import psycopg

SCHEMAS = ("gateway", "generator", "poller", "media")


def explain_generations(
    database_url: str, gids: list[str], on_broker: set[str]
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """(gid → lines, counts of outbox rows unpublished / published but absent from the broker)."""
    url = database_url.replace("postgresql+asyncpg://", "postgresql://")
    lines: dict[str, list[str]] = {}
    backlog: dict[str, int] = {}  # "<schema> unpublished" / "<schema> published, not on the broker"
    wanted = set(gids)
    with psycopg.connect(url, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT generation_id, attempt, state, runway_task_id, error_code "
            "FROM generator.submissions WHERE generation_id = ANY(%s) ORDER BY attempt",
            (gids,),
        ).fetchall()
        for gid, attempt, state, task, code in rows:
            lines.setdefault(gid, []).append(
                f"generator #{attempt} {state} task={task} {code or ''}"
            )
        for schema in SCHEMAS:
            outbox = conn.execute(
                f"SELECT convert_from(key, 'UTF8'), topic, event_id, published_at "  # noqa: S608
                f"FROM {schema}.outbox ORDER BY id"
            ).fetchall()
            for key, topic, event_id, published in outbox:
                there = str(event_id) in on_broker
                if published is None:
                    backlog[f"{schema} unpublished"] = backlog.get(f"{schema} unpublished", 0) + 1
                elif not there:
                    name = f"{schema} published, not on the broker"
                    backlog[name] = backlog.get(name, 0) + 1
                if key in wanted:
                    where = "on the broker" if there else "NOT on the broker"
                    sent = f"published {published:%H:%M:%S}" if published else "unpublished"
                    lines.setdefault(key, []).append(f"{schema} outbox {topic} {sent}, {where}")
    return lines, backlog
