"""The CI-sized chaos run: every invariant of the reliability contract, under real faults.

About 60 generations from 12 users while each of the eight process kinds is killed -9 once,
PostgreSQL restarts (``-m immediate``) and the simulator injects its faults; it starts its own
private broker, S3 server and PostgreSQL, so nothing else is disturbed. ``CHAOS_SEED`` replays
a run (the seed is printed either way). Deselect with ``-m "not chaos"``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from vidgen_chaos.faults import SIZES
from vidgen_chaos.report import table
from vidgen_chaos.run import Config, run

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1500)]


async def test_chaos_ci_size(tmp_path: Path) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or secrets.randbelow(10**6))
    verdict = await run(Config(size=SIZES["ci"], seed=seed, out=tmp_path))
    broken = "\n".join(f"{r.name}: {r.value}" for r in verdict.broken)
    assert not verdict.broken, f"seed {seed}: invariants broken\n{broken}\n\n{table(verdict)}"
