"""The judge: figures and invariants computed from the evidence (pure functions).

A Runway task belongs to the generation whose marker starts its prompt (the simulator records
the prompt); a task is *recorded* when its id appears in a ``TaskSubmitted`` on the broker;
*paid* when Runway charged it and did not refund it. A failure is *explained* only by an
injected fault that can cause exactly that code (see :func:`explain`); an orphaned task (never
recorded) only by a lost create answer or by a generator stopped while its create was in flight:
created in ``[K - runway_timeout_s - 5 s, K + 0.5 s]`` around a kill instant ``K``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from vidgen_chaos.evidence import Evidence
from vidgen_chaos.faults import Applied
from vidgen_chaos.load import TERMINAL, Outcome
from vidgen_chaos.supervisor import Exit
from vidgen_chaos.webhooks import judge_webhooks

ACTIVE = ("PENDING", "THROTTLED", "RUNNING")
BAD_OUTPUT = "INTERNAL.BAD_OUTPUT"


@dataclass(frozen=True)
class Knobs:
    """The service settings the judge needs (as the run set them)."""

    signal: str  # kill | term
    runway_timeout_s: float
    max_concurrent_submissions: int
    max_attempts: int
    download_retries: int
    url_refreshes: int
    deadline_s: float


@dataclass(frozen=True)
class Row:
    name: str
    value: str
    ok: bool | None  # None: a figure, not an invariant


@dataclass
class Verdict:
    rows: list[Row] = field(default_factory=list)
    details: dict[str, list[str]] = field(default_factory=dict)  # section → findings
    suspects: dict[str, list[str]] = field(default_factory=dict)  # gid → why it is suspect
    first: dict[str, str] = field(default_factory=dict)  # section → its first suspect gid
    section: str = ""

    def add(self, name: str, value: object, ok: bool | None = None) -> None:
        self.rows.append(Row(name, str(value), ok))

    def flag(self, gid: str | None, why: str) -> None:
        self.details.setdefault(self.section, []).append(f"  {gid or '(no generation)'}: {why}")
        if gid:
            self.suspects.setdefault(gid, []).append(why)
            self.first.setdefault(self.section, gid)

    @property
    def broken(self) -> list[Row]:
        return [r for r in self.rows if r.ok is False]


def ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class Facts:
    """The evidence, indexed."""

    outcomes: list[Outcome]
    views: dict[str, dict[str, Any]]
    ev: Evidence
    applied: list[Applied]
    exits: list[Exit]
    knobs: Knobs
    by_marker: dict[str, Outcome] = field(init=False)
    tasks_of: dict[str, list[dict[str, Any]]] = field(init=False)
    recorded: set[str] = field(init=False)
    completions: dict[str, set[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_marker = {o.planned.marker: o for o in self.outcomes}
        self.tasks_of = defaultdict(list)
        for task in self.ev.sim_tasks:
            if (gid := self.gid_of(task)) is not None:
                self.tasks_of[gid].append(task)
        self.recorded = {
            str(r.data.get("runwayTaskId")) for r in self.ev.of("generation.task-submitted")
        }
        self.completions = defaultdict(set)
        for r in self.ev.of("generation.completed"):
            self.completions[str(r.data.get("generationId"))].add(r.ce_id)

    def gid_of(self, task: dict[str, Any]) -> str | None:
        marker = (task.get("prompt_text") or "").split(" ", 1)[0]
        outcome = self.by_marker.get(marker)
        return outcome.generation_id if outcome else None

    def outcome(self, gid: str) -> Outcome:
        return next(o for o in self.outcomes if o.generation_id == gid)

    def kills(self, target: str) -> list[datetime]:
        return [
            a.started
            for a in self.applied
            if a.fault.target == target
            and a.fault.kind in ("kill", "term")
            and a.outcome != "not running"
        ]

    def windows(self, prefix: str) -> list[tuple[datetime, datetime]]:
        return [
            (a.started, a.ended or a.started)
            for a in self.applied
            if a.fault.kind == "sim" and a.fault.target.startswith(prefix) and a.outcome == "ok"
        ]


def _in(at: datetime | None, windows: list[tuple[datetime, datetime]], slack_s: float = 1) -> bool:
    pad = timedelta(seconds=slack_s)
    return at is not None and any(lo - pad <= at <= hi + pad for lo, hi in windows)


def lost_answer(f: Facts, task: dict[str, Any]) -> bool:
    """Runway created the task but its answer to the create was lost (an injected fault)."""
    if any(x.startswith("lost_create") for x in task.get("faults", ())):
        return True
    return _in(ts(task.get("created_at")), f.windows("create_then_error"), slack_s=0.5)


def kill_in_flight(f: Facts, task: dict[str, Any]) -> datetime | None:
    """The generator kill (or SIGTERM) during whose create window the task was created."""
    created = ts(task.get("created_at"))
    if created is None:
        return None
    before = timedelta(seconds=f.knobs.runway_timeout_s + 5)
    for k in f.kills("generator"):
        if k - before <= created <= k + timedelta(seconds=0.5):
            return k
    return None


def paid(task: dict[str, Any]) -> bool:
    cost = task.get("cost")
    return task.get("status") in ACTIVE if cost is None else cost > 0


def explain(f: Facts, gid: str, code: str | None) -> str | None:
    """The injected fault that explains a failure code, or None."""
    tasks = f.tasks_of.get(gid, [])
    out = f.outcome(gid)
    if code == "moderation":
        return "moderation word in the prompt" if out.planned.moderated else None
    if code == "runway_bad_output":
        bad = [t for t in tasks if str(t.get("failure_code") or "").startswith(BAD_OUTPUT)]
        return "every attempt INTERNAL.BAD_OUTPUT" if len(bad) >= f.knobs.max_attempts else None
    if code == "submission_unknown":
        if any(lost_answer(f, t) for t in tasks):
            return "the create's answer was lost (injected)"
        if f.knobs.signal == "kill":
            if any(kill_in_flight(f, t) for t in tasks):
                return "generator killed -9 while the create was in flight"
            end = ts(f.views.get(gid, {}).get("updatedAt"))
            kills = f.kills("generator")
            if (
                not tasks
                and out.accepted_at
                and end
                and any(out.accepted_at <= k <= end for k in kills)
            ):
                return "generator killed -9 between intent and create"
        return None
    families = {
        "runway_rate_limited": "rate_limit",
        "runway_unavailable": "server_errors",
    }
    if code in families:
        end = ts(f.views.get(gid, {}).get("updatedAt"))
        lo = out.accepted_at
        hit = [w for w in f.windows(families[code]) if lo and end and w[0] <= end and w[1] >= lo]
        return "gave up during an injected 429/5xx burst" if hit else None
    if code == "runway_timeout":
        for t in tasks:
            start, end_at = ts(t.get("created_at")), ts(t.get("finished_at"))
            late = start and end_at and (end_at - start).total_seconds() >= f.knobs.deadline_s - 5
            if t.get("status") == "CANCELLED" and late:
                return "still active at Runway past the deadline"
        return None
    if code == "download_failed":
        hits = [
            t
            for t in tasks
            if sum(x.startswith("download_") for x in t.get("faults", ()))
            >= f.knobs.download_retries
        ]
        return "more download faults than retries" if hits else None
    if code == "url_expired":
        hits = [
            t
            for t in tasks
            if t.get("faults", []).count("output_url_expired") > f.knobs.url_refreshes
        ]
        return "more expired URLs than refreshes" if hits else None
    return None


def judge(f: Facts) -> Verdict:
    v = Verdict()
    for check in (
        _load,
        _terminal,
        _creates,
        _videos,
        _completions,
        _dlq,
        _failures,
        _orphans,
        _webhooks,
        _ledger,
        _processes,
    ):
        v.section = check.__name__.strip("_")
        check(f, v)
    return v


def _load(f: Facts, v: Verdict) -> None:
    accepted = [o for o in f.outcomes if o.generation_id]
    v.add("generations requested", len(f.outcomes))
    v.add("accepted (202)", len(accepted))
    refused = Counter((o.refused or "")[:60] for o in f.outcomes if not o.generation_id)
    v.add("not accepted", ", ".join(f"{n} x {why}" for why, n in refused.items()) or 0)


def _terminal(f: Facts, v: Verdict) -> None:
    statuses = Counter(
        f.views.get(o.generation_id, {}).get("status", "unknown")
        for o in f.outcomes
        if o.generation_id
    )
    v.add("final statuses", ", ".join(f"{s} {n}" for s, n in sorted(statuses.items())))
    stuck = [
        gid
        for o in f.outcomes
        if (gid := o.generation_id) and f.views.get(gid, {}).get("status") not in TERMINAL
    ]
    for gid in stuck:
        view = f.views.get(gid, {})
        v.flag(gid, f"stuck in {view.get('status', 'unknown')} (progress {view.get('progress')})")
    v.add("stuck (not terminal)", len(stuck), not stuck)


def _creates(f: Facts, v: Verdict) -> None:
    tasks = f.ev.sim_tasks
    counted = int(f.ev.counters.get("creates_accepted", -1))
    v.add("Runway creates (counters)", counted, counted == len(tasks))
    strangers = [t["id"] for t in tasks if f.gid_of(t) is None]
    v.add("Runway tasks of no accepted generation", len(strangers), not strangers)
    gens = len(f.tasks_of)
    bad = sum(str(t.get("failure_code") or "").startswith(BAD_OUTPUT) for t in tasks)
    excess = 0
    twice = 0
    for gid, mine in f.tasks_of.items():
        allowed = 1 + sum(str(t.get("failure_code") or "").startswith(BAD_OUTPUT) for t in mine)
        if len(mine) > allowed:
            excess += len(mine) - allowed
            v.flag(gid, f"{len(mine)} Runway tasks, {allowed} explained: {[t['id'] for t in mine]}")
        if sum(paid(t) for t in mine) >= 2:
            twice += 1
            v.flag(gid, f"paid twice: {[(t['id'], t['status'], t.get('cost')) for t in mine]}")
    v.add("generations with a Runway task / BAD_OUTPUT resubmissions", f"{gens} / {bad}")
    v.add("creates not explained (= creates - generations - resubmissions)", excess, excess == 0)
    v.add("generations paid twice", twice, twice == 0)


def _videos(f: Facts, v: Verdict) -> None:
    lost = 0
    for gid, mine in f.tasks_of.items():
        done = [t for t in mine if t["status"] == "SUCCEEDED" and t["id"] in f.recorded]
        if f.views.get(gid, {}).get("status") != "completed" and done:
            lost += 1
            view = f.views.get(gid, {})
            v.flag(
                gid,
                f"Runway SUCCEEDED but generation {view.get('status')} ({view.get('errorCode')})",
            )
    v.add("videos lost after Runway produced them (task recorded)", lost, lost == 0)
    bad = {gid: p for gid, p in f.ev.videos.items() if p}
    for gid, problems in bad.items():
        v.flag(gid, "stored video: " + "; ".join(problems))
    v.add(
        "completed videos verified (download, MP4, sha256 = event = Runway's)",
        f"{len(f.ev.videos) - len(bad)}/{len(f.ev.videos)}",
        not bad,
    )
    if f.ev.multipart is None:
        v.add("unfinished multipart uploads", f"not checked: {f.ev.multipart_error}", False)
    else:
        v.add("unfinished multipart uploads", len(f.ev.multipart), not f.ev.multipart)
        for key in f.ev.multipart[:10]:
            v.flag(None, f"unfinished multipart upload {key}")


def _completions(f: Facts, v: Verdict) -> None:
    completed = {gid for gid, view in f.views.items() if view.get("status") == "completed"}
    missing = [g for g in completed if not f.completions.get(g)]
    several = [g for g, ids in f.completions.items() if len(ids) > 1]
    stray = [g for g in f.completions if g not in completed]
    for g in missing:
        v.flag(g, "completed, but no GenerationCompleted on the broker")
    for g in several:
        v.flag(g, f"{len(f.completions[g])} GenerationCompleted ids: {sorted(f.completions[g])}")
    for g in stray:
        v.flag(g, f"GenerationCompleted on the broker, status {f.views.get(g, {}).get('status')}")
    records = sum(len(ids) for ids in f.completions.values())
    v.add("GenerationCompleted: ids / generations", f"{records} / {len(f.completions)}")
    v.add("completed without a GenerationCompleted", len(missing), not missing)
    v.add("generations with 2+ GenerationCompleted ids", len(several), not several)
    v.add("GenerationCompleted for a generation not completed", len(stray), not stray)


def _dlq(f: Facts, v: Verdict) -> None:
    dlq = {t: rs for t, rs in f.ev.records.items() if t.endswith(".dlq") and rs}
    total = sum(len(rs) for rs in dlq.values())
    for topic, rs in dlq.items():
        for r in rs[:20]:
            v.flag(r.key or None, f"{topic}: {r.headers.get('dlq_reason', '')[:200]}")
    by_topic = ", ".join(f"{t} {len(rs)}" for t, rs in sorted(dlq.items()))
    v.add("records in *.dlq topics", f"{total} ({by_topic})" if total else 0, total == 0)


def _failures(f: Facts, v: Verdict) -> None:
    explained: Counter[str] = Counter()
    unexplained: Counter[str] = Counter()
    for gid, view in f.views.items():
        if view.get("status") not in ("failed", "cancelled"):
            continue
        code = view.get("errorCode") if view.get("status") == "failed" else "cancelled"
        why = explain(f, gid, code)
        if why:
            explained[str(code)] += 1
        else:
            unexplained[str(code)] += 1
            v.flag(gid, f"failed {code} unexplained: {str(view.get('errorMessage'))[:200]}")
    v.add(
        "failures explained by an injected fault",
        ", ".join(f"{c} {n}" for c, n in sorted(explained.items())) or 0,
    )
    total = sum(unexplained.values())
    text = ", ".join(f"{c} {n}" for c, n in sorted(unexplained.items()))
    v.add("failures NOT explained", f"{total} ({text})" if total else 0, total == 0)


def _orphans(f: Facts, v: Verdict) -> None:
    orphans = [t for t in f.ev.sim_tasks if t["id"] not in f.recorded]
    by_kill: Counter[datetime] = Counter()
    lost = unexplained = 0
    for t in orphans:
        gid = f.gid_of(t)
        fate = f.views.get(gid or "", {})
        state = f"generation {fate.get('status')} {fate.get('errorCode') or ''}".strip()
        if lost_answer(f, t):
            lost += 1
        elif (k := kill_in_flight(f, t)) is not None:
            by_kill[k] += 1
            v.flag(
                gid,
                f"orphan {t['id']} ({t['status']}) created {t['created_at']}, "
                f"generator stopped {k.isoformat()}; {state}",
            )
        else:
            unexplained += 1
            v.flag(
                gid,
                f"orphan {t['id']} ({t['status']}, created {t['created_at']}) unexplained; {state}",
            )
    in_kills = sum(by_kill.values())
    worst = max(by_kill.values(), default=0)
    cap = f.knobs.max_concurrent_submissions
    v.add(
        "Runway tasks never recorded (orphans)",
        f"{len(orphans)} ({sum(paid(t) for t in orphans)} paid): {lost} lost answers, "
        f"{in_kills} at generator stops, {unexplained} unexplained",
    )
    creates_at_kills = sum(1 for t in f.ev.sim_tasks if kill_in_flight(f, t))
    v.add("creates in flight at generator stops (upper bound)", creates_at_kills)
    v.add("orphans not explained", unexplained, unexplained == 0)
    v.add(f"orphans per generator stop (max; ≤ {cap})", worst, worst <= cap)
    if f.knobs.signal == "term":
        v.add("orphans at SIGTERM stops (must be 0)", in_kills, in_kills == 0)


def _webhooks(f: Facts, v: Verdict) -> None:
    if f.ev.webhooks is None:
        return
    statuses = {
        gid: str(f.views.get(gid, {}).get("status")) for o in f.outcomes if (gid := o.generation_id)
    }
    judge_webhooks(f.ev.webhooks, statuses, v.add, v.flag)


def charged(task: dict[str, Any]) -> int:
    """What Runway holds for a task now: its final cost, or what it took at creation."""
    cost = task.get("cost")
    return int(task.get("credits") or 0) if cost is None else int(cost)


def _ledger(f: Facts, v: Verdict) -> None:
    """The gateway's settled costs against what the simulator charged (its credits_charged):
    equal, but for tasks the pipeline never recorded (orphans: no event ever named them, so no
    ledger can know their cost; counted and explained by the orphans section)."""
    settled = 0
    unsettled = mismatched = 0
    for o in f.outcomes:
        gid = o.generation_id
        if not gid:
            continue
        view = f.views.get(gid, {})
        mine = sum(charged(t) for t in f.tasks_of.get(gid, []) if t["id"] in f.recorded)
        value = view.get("settledCostCredits")
        if value is None:
            if view.get("status") in TERMINAL:
                unsettled += 1
                v.flag(gid, f"{view.get('status')} but not settled")
            continue
        settled += int(value)
        if int(value) != mine:
            mismatched += 1
            v.flag(gid, f"settled {value} credits, Runway charged {mine} for its recorded tasks")
    orphans = sum(charged(t) for t in f.ev.sim_tasks if t["id"] not in f.recorded)
    total = int(f.ev.counters.get("credits_charged", -1))
    v.add("terminal generations not settled", unsettled, unsettled == 0)
    v.add("generations settled at another cost than Runway charged", mismatched, mismatched == 0)
    v.add(
        "settled credits (gateway) = credits_charged (simulator) - orphans' credits",
        f"{settled} = {total} - {orphans}",
        settled == total - orphans,
    )


def _processes(f: Facts, v: Verdict) -> None:
    ours = Counter(e.name for e in f.exits if e.caused_by)
    crashes = Counter(e.name for e in f.exits if not e.caused_by)
    v.add("process stops we caused", ", ".join(f"{n} {c}" for n, c in sorted(ours.items())) or 0)
    v.add(
        "process exits we did not cause",
        ", ".join(f"{n} {c}" for n, c in sorted(crashes.items())) or 0,
    )
    if crashes.get("runway-sim"):
        v.add("the simulator stayed up (its records are the judge)", "no", False)
    v.add("processes ready at the end", ", ".join(f.ev.not_ready) or "all", not f.ev.not_ready)
    v.add("ERROR lines in the broker's log", f.ev.broker_errors)
    for line in f.ev.broker_anomalies:
        v.flag(None, f"broker: {line}")
    v.add(
        "the broker kept every record (infrastructure, not vidgen)",
        "; ".join(f.ev.broker_anomalies[:4]) or "yes",
        not f.ev.broker_anomalies,
    )
    outcomes = Counter(a.outcome.split(":")[0] for a in f.applied)
    v.add("faults applied", ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items())))
    errors = [a for a in f.applied if a.outcome.startswith("error")]
    for a in errors:
        v.flag(None, f"fault {a.fault.describe()} failed: {a.outcome}")
    v.add("faults that could not be applied (harness/infrastructure)", len(errors), not errors)
