"""Finished tasks are deleted after the retention, in small batches; active ones stay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from vidgen_common.db import run_sql
from vidgen_poller import tracker as tracker_module

pytestmark = pytest.mark.integration

_ROW = (
    "INSERT INTO tracked_tasks (runway_task_id, generation_id, user_id, model, duration, "
    "attempt, submitted_at, state, next_poll_at, deadline_at, finished_at) "
    "VALUES (:t, :t, 'u', 'gen4_turbo', 5, 1, :at, :state, :at, :at, :finished)"
)


async def test_purge_deletes_old_finished_tasks_in_batches_and_keeps_active_ones(
    make_poller: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_poller(done_retention_s=86_400)
    now = p.clock.now
    old = now - timedelta(days=3)
    rows = [(f"old-done-{i}", "done", old) for i in range(5)]
    rows += [("recent-done", "done", now - timedelta(hours=1))]
    rows += [("old-active", "active", None), ("old-refresh", "refresh", None)]
    async with p.sessions() as s:
        for task, state, finished in rows:
            await run_sql(s, _ROW, {"t": task, "state": state, "at": old, "finished": finished})
        await s.commit()
    monkeypatch.setattr(tracker_module, "PURGE_BATCH", 2)
    for _ in range(4):  # one batch per pass of the loop, until less than a batch is left
        await p.tracker._purge()
        p.clock.advance(1)
    async with p.sessions() as s:
        left = (await run_sql(s, "SELECT runway_task_id FROM tracked_tasks ORDER BY 1")).all()
    assert [r[0] for r in left] == ["old-active", "old-refresh", "recent-done"]
    # and then it waits for the next purge period
    async with p.sessions() as s:
        await run_sql(s, _ROW, {"t": "later", "state": "done", "at": old, "finished": old})
        await s.commit()
    await p.tracker._purge()
    async with p.sessions() as s:
        n = (await run_sql(s, "SELECT count(*) FROM tracked_tasks")).scalar_one()
    assert n == 4
