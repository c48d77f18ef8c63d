"""The judge of the chaos suite, on made-up evidence: it must flag what breaks the contract.

Fast and pure (no stack): each case builds the evidence a run would collect and checks which
invariants the judge reports broken, so a chaos run that passes means something.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from vidgen_chaos.evidence import Evidence, Record, anomalies
from vidgen_chaos.faults import Applied, Fault
from vidgen_chaos.invariants import Facts, Knobs, Verdict, charged, judge
from vidgen_chaos.load import TERMINAL, Outcome, Planned
from vidgen_chaos.supervisor import Exit

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def iso(s: float) -> str:
    return at(s).isoformat()


@dataclass
class Case:
    signal: str = "kill"
    outcomes: list[Outcome] = field(default_factory=list)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    ev: Evidence = field(default_factory=Evidence)
    applied: list[Applied] = field(default_factory=list)
    offset: int = 0

    def generation(
        self, status: str = "completed", code: str | None = None, moderated: bool = False
    ) -> str:
        n = len(self.outcomes)
        gid = f"g{n}"
        planned = Planned(n, "u1", 0.0, f"chaos-1-{n}", moderated)
        self.outcomes.append(Outcome(planned, gid, at(n)))
        self.views[gid] = {"status": status, "errorCode": code, "updatedAt": iso(n + 30)}
        if status == "completed":
            self.ev.videos[gid] = []
            self.event("generation.completed", gid, f"ce-{gid}")
        return gid

    def task(
        self,
        gid: str,
        status: str = "SUCCEEDED",
        *,
        created: float = 1,
        recorded: bool = True,
        cost: int | None = 25,
        faults: list[str] | None = None,
        failure: str | None = None,
        finished: float | None = 3,
    ) -> str:
        tid = f"t{len(self.ev.sim_tasks)}"
        n = next(o.planned.n for o in self.outcomes if o.generation_id == gid)
        self.ev.sim_tasks.append(
            {
                "id": tid,
                "status": status,
                "prompt_text": f"chaos-1-{n} a slow pan",
                "created_at": iso(created),
                "finished_at": iso(finished) if finished is not None else None,
                "cost": cost,
                "credits": 25,
                "failure_code": failure,
                "faults": faults or [],
            }
        )
        if recorded:
            self.event("generation.task-submitted", gid, f"ts-{tid}", runwayTaskId=tid)
        return tid

    def event(self, topic: str, gid: str, ce_id: str, **data: Any) -> None:
        self.offset += 1
        record = Record(topic, 0, self.offset, gid, {"ce_id": ce_id}, {"generationId": gid, **data})
        self.ev.records.setdefault(topic, []).append(record)

    def fault(self, kind: str, target: str, start: float, end: float | None = None) -> None:
        self.applied.append(
            Applied(Fault(start, kind, target), at(start), at(end if end is not None else start))
        )

    def settle(self) -> None:
        """Settle every terminal generation at what Runway charged for its recorded tasks, as
        the gateway does (unless a case set ``settledCostCredits`` itself)."""
        recorded = {
            str(r.data.get("runwayTaskId")) for r in self.ev.of("generation.task-submitted")
        }
        for o in self.outcomes:
            view = self.views[o.generation_id or ""]
            if "settledCostCredits" in view or view["status"] not in TERMINAL:
                continue
            view["settledCostCredits"] = sum(
                charged(t)
                for t in self.ev.sim_tasks
                if t["id"] in recorded and t["prompt_text"].startswith(o.planned.marker + " ")
            )

    def judge(self) -> Verdict:
        self.settle()
        self.ev.counters = {
            "creates_accepted": len(self.ev.sim_tasks),
            "credits_charged": sum(charged(t) for t in self.ev.sim_tasks),
        }
        self.ev.multipart = []
        knobs = Knobs(self.signal, 10.0, 8, 3, 5, 3, 60.0)
        exits = [
            Exit(a.fault.target, a.started, -9, a.fault.kind)
            for a in self.applied
            if a.fault.kind in ("kill", "term")
        ]
        return judge(Facts(self.outcomes, self.views, self.ev, self.applied, exits, knobs))


def broken(v: Verdict) -> set[str]:
    return {r.name for r in v.broken}


def test_a_clean_run_breaks_nothing() -> None:
    case = Case()
    case.task(case.generation())
    bad = case.generation("failed", "runway_bad_output")
    for i in range(3):
        case.task(bad, "FAILED", created=1 + i * 5, cost=0, failure="INTERNAL.BAD_OUTPUT.CODE01")
    case.generation("failed", "moderation", moderated=True)
    v = case.judge()
    assert broken(v) == set(), v.details


def test_two_paid_tasks_for_one_generation() -> None:
    case = Case()
    gid = case.generation()
    case.task(gid)
    case.task(gid, created=2)
    assert {
        "generations paid twice",
        "creates not explained (= creates - generations - resubmissions)",
    } <= broken(case.judge())


def test_a_resubmission_after_bad_output_is_explained() -> None:
    case = Case()
    gid = case.generation()
    case.task(gid, "FAILED", cost=0, failure="INTERNAL.BAD_OUTPUT.CODE01")
    case.task(gid, created=5)
    assert broken(case.judge()) == set()


def test_stuck_generations_and_dead_letters() -> None:
    case = Case()
    gid = case.generation("processing")
    case.task(gid)
    case.event("generation.video-ready.dlq", gid, "x")
    names = broken(case.judge())
    assert {
        "stuck (not terminal)",
        "records in *.dlq topics",
        "videos lost after Runway produced them (task recorded)",
    } <= names


def test_two_completion_ids_break_but_redeliveries_do_not() -> None:
    case = Case()
    gid = case.generation()
    case.task(gid)
    case.event("generation.completed", gid, f"ce-{gid}")  # the same id again: a redelivery
    assert broken(case.judge()) == set()
    case.event("generation.completed", gid, "another-id")
    assert "generations with 2+ GenerationCompleted ids" in broken(case.judge())


def test_orphans_are_explained_only_by_lost_answers_and_generator_kills() -> None:
    case = Case()
    case.fault("kill", "generator", 100)
    lost = case.generation("failed", "submission_unknown")
    case.task(lost, created=10, recorded=False, faults=["lost_create_hang"])
    killed = case.generation("failed", "submission_unknown")
    case.task(killed, created=95, recorded=False)  # within the create window before the kill
    assert broken(case.judge()) == set()
    stray = case.generation("failed", "submission_unknown")
    case.task(stray, created=50, recorded=False)  # no kill near it, no lost answer
    names = broken(case.judge())
    assert {"orphans not explained", "failures NOT explained"} <= names


def test_sigterm_must_orphan_nothing() -> None:
    case = Case(signal="term")
    case.fault("term", "generator", 100)
    gid = case.generation("failed", "submission_unknown")
    case.task(gid, created=99, recorded=False)
    names = broken(case.judge())
    assert {"orphans at SIGTERM stops (must be 0)", "failures NOT explained"} <= names


def test_a_finished_task_failed_as_timed_out_is_a_lost_video() -> None:
    case = Case()
    gid = case.generation("failed", "runway_timeout")
    case.task(gid, "SUCCEEDED", finished=3)
    names = broken(case.judge())
    assert {
        "failures NOT explained",
        "videos lost after Runway produced them (task recorded)",
    } <= names


def test_a_task_cancelled_past_its_deadline_explains_runway_timeout() -> None:
    case = Case()
    gid = case.generation("failed", "runway_timeout")
    case.task(gid, "CANCELLED", created=1, finished=62)
    assert broken(case.judge()) == set()


@pytest.mark.parametrize(
    ("problem", "row"),
    [
        (
            ["stored bytes differ from GenerationCompleted's sha256/size"],
            "completed videos verified (download, MP4, sha256 = event = Runway's)",
        ),
    ],
)
def test_a_bad_stored_video(problem: list[str], row: str) -> None:
    case = Case()
    gid = case.generation()
    case.task(gid)
    case.ev.videos[gid] = problem
    assert row in broken(case.judge())


def test_a_broker_that_reused_offsets_or_lost_its_head_is_reported() -> None:
    first = Record("generation.requested", 0, 3, "g0", {"ce_id": "a"}, {})
    again = Record("generation.requested", 0, 3, "g1", {"ce_id": "b"}, {})
    found = anomalies(
        {"generation.requested": [first, again]}, {("generation.requested", 0): (3, 6)}
    )
    assert found == [
        "generation.requested: 1 offsets hold 2+ different records",
        "generation.requested[0] starts at offset 3",
        "generation.requested[0]: 2 offsets below 6 hold no record",
    ]
    whole = Record("generation.requested", 1, 0, "g2", {"ce_id": "c"}, {})
    assert anomalies({"generation.requested": [whole]}, {("generation.requested", 1): (0, 1)}) == []
    case = Case()
    case.task(case.generation())
    case.ev.broker_anomalies = found
    assert broken(case.judge()) == {"the broker kept every record (infrastructure, not vidgen)"}


def test_the_ledger_must_settle_every_generation_at_what_runway_charged() -> None:
    case = Case()
    case.task(case.generation())  # settled 25, charged 25
    slow = case.generation("failed", "runway_timeout")
    case.task(slow, "CANCELLED", cost=25, finished=70)  # cancelled while running: charged
    orphaned = case.generation("failed", "submission_unknown")
    case.task(orphaned, "SUCCEEDED", recorded=False, faults=["lost_create"])  # no ledger knows it
    assert broken(case.judge()) == set()

    case = Case()
    wrong = case.generation("failed", "runway_timeout")
    case.task(wrong, "CANCELLED", cost=25, finished=70)
    case.views[wrong]["settledCostCredits"] = 0  # refunded in the ledger, charged at Runway
    assert broken(case.judge()) == {
        "generations settled at another cost than Runway charged",
        "settled credits (gateway) = credits_charged (simulator) - orphans' credits",
    }

    case = Case()
    never = case.generation("failed", "moderation", moderated=True)
    case.task(never, "FAILED", cost=0)
    case.views[never]["settledCostCredits"] = None
    assert broken(case.judge()) == {"terminal generations not settled"}
