"""The fault schedule and the load plan: reproducible from the seed, of the promised size."""

from __future__ import annotations

import itertools
from collections import Counter

from vidgen_chaos.faults import PROCESSES, SIZES, schedule, sim_faults
from vidgen_chaos.load import MODERATION_WORD, plan


def test_the_same_seed_gives_the_same_schedule_and_load() -> None:
    size = SIZES["full"]
    assert schedule(42, size, "kill") == schedule(42, size, "kill")
    assert schedule(42, size, "kill") != schedule(43, size, "kill")
    assert plan(42, 500, 5, 420, 5) == plan(42, 500, 5, 420, 5)


def test_the_full_size_has_what_the_issue_asks() -> None:
    size = SIZES["full"]
    faults = schedule(7, size, "kill")
    kills = Counter(f.target for f in faults if f.kind == "kill")
    assert set(kills) == set(PROCESSES)
    assert sum(kills.values()) >= 16
    infra = {(f.kind, f.target) for f in faults if f.kind in ("restart", "outage")}
    assert infra == {(k, p) for k in ("restart", "outage") for p in ("postgres", "kafka", "s3")}
    assert {f.target for f in faults if f.kind == "sim"} == set(sim_faults(10))
    assert size.generations >= 500


def test_outages_do_not_overlap_and_sigterm_replaces_every_kill() -> None:
    size = SIZES["full"]
    outages = sorted(f.at_s for f in schedule(7, size, "kill") if f.kind in ("restart", "outage"))
    assert all(b - a > 40 for a, b in itertools.pairwise(outages))
    assert {f.kind for f in schedule(7, size, "term")} == {"term", "restart", "outage", "sim"}


def test_the_load_spreads_users_and_marks_a_few_prompts() -> None:
    planned = plan(3, 60, 5, 50, 2)
    assert len({p.marker for p in planned}) == 60
    assert max(Counter(p.user for p in planned).values()) == 5
    assert sum(MODERATION_WORD in p.prompt for p in planned) == 2
    assert all(p.prompt.startswith(p.marker + " ") for p in planned)
