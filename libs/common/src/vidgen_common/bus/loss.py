"""Has the broker lost data we gave it? Pure decisions over what we saw and what it says now.

A Kafka partition's end offset (the offset its next record gets) never moves backwards:
retention removes records from the *start* of the log, compaction leaves holes, but the end
only grows, and a new record never gets an offset already given out. What a service has seen
is summed up in :class:`BrokerMarks`: per partition the highest end offset it *observed* and
the highest offset it was *acknowledged* (plus one), and the cluster id. The broker lost data
when, later:

- the cluster id changed (a different cluster, or one whose storage was wiped);
- a topic that held records is gone, or one of its partitions is;
- a partition's end is below an end observed before (the topic was recreated, or an unclean
  election truncated it);
- a produce is acknowledged at an offset below either mark (the broker restarted empty and
  took the write as the first of a new log, or it overwrote a record).

An end below what was *acknowledged* (but not below what was observed) is only a suspicion
(:attr:`Verdict.suspects`): on Kafka it means loss, but some brokers (tansu on S3 storage)
report an end that lags one or two records behind what they hold; the caller confirms by
reading the acknowledged record. Offsets behind a consumer because of retention are not loss,
and neither is an empty topic that disappears (it held nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vidgen_common.outbox import Ack

__all__ = ["Ack", "BrokerMarks", "BrokerView", "Ends", "Verdict", "ack_losses", "losses"]

Ends = dict[str, dict[int, int]]
"""An offset per partition, per topic."""


@dataclass(frozen=True)
class BrokerView:
    """What the broker says now about some topics."""

    cluster_id: str | None
    ends: Ends
    missing: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Verdict:
    """Reasons to think data was lost, and (topic, partition, offset) records to read back
    before deciding (the broker's end is below an offset it acknowledged)."""

    reasons: list[str] = field(default_factory=list)
    suspects: list[tuple[str, int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class BrokerMarks:
    """The most a service knows the broker held: ends observed, offsets acknowledged."""

    cluster_id: str | None = None
    ends: Ends = field(default_factory=dict)
    acked: Ends = field(default_factory=dict)

    def observe(self, view: BrokerView) -> BrokerMarks:
        """These marks raised to what ``view`` shows (a view in which nothing was lost)."""
        return BrokerMarks(
            view.cluster_id or self.cluster_id, _max(self.ends, view.ends), self.acked
        )

    def acknowledged(self, acks: Iterable[Ack]) -> BrokerMarks:
        """These marks raised past every acknowledged record."""
        seen: Ends = {}
        for ack in acks:
            if ack.offset >= 0:
                parts = seen.setdefault(ack.topic, {})
                parts[ack.partition] = max(parts.get(ack.partition, 0), ack.offset + 1)
        return BrokerMarks(self.cluster_id, self.ends, _max(self.acked, seen))

    @staticmethod
    def fresh(view: BrokerView) -> BrokerMarks:
        """Marks starting afresh from ``view`` (after a loss was handled)."""
        return BrokerMarks(view.cluster_id, {t: dict(p) for t, p in view.ends.items()})

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "ends": _dump(self.ends),
            "acked": _dump(self.acked),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> BrokerMarks:
        if not data:
            return cls()
        cluster = data.get("cluster_id")
        return cls(
            str(cluster) if cluster is not None else None,
            _load(data.get("ends")),
            _load(data.get("acked")),
        )


def _dump(ends: Ends) -> dict[str, dict[str, int]]:
    return {t: {str(p): o for p, o in parts.items()} for t, parts in ends.items()}


def _load(data: Any) -> Ends:
    return {str(t): {int(p): int(o) for p, o in parts.items()} for t, parts in (data or {}).items()}


def _max(a: Ends, b: Ends) -> Ends:
    out = {t: dict(p) for t, p in a.items()}
    for topic, parts in b.items():
        mine = out.setdefault(topic, {})
        for p, end in parts.items():
            mine[p] = max(mine.get(p, 0), end)
    return out


def losses(marks: BrokerMarks, view: BrokerView) -> Verdict:
    """Why ``view`` shows that the broker lost data it held (see the module doc)."""
    reasons: list[str] = []
    suspects: list[tuple[str, int, int]] = []
    if marks.cluster_id and view.cluster_id and marks.cluster_id != view.cluster_id:
        reasons.append(f"the cluster id changed from {marks.cluster_id} to {view.cluster_id}")
    for topic in sorted(set(marks.ends) | set(marks.acked)):
        observed = {p: e for p, e in marks.ends.get(topic, {}).items() if e > 0}
        acked = {p: e for p, e in marks.acked.get(topic, {}).items() if e > 0}
        if not observed and not acked:
            continue  # it never held a record: nothing to lose
        if topic in view.missing:
            reasons.append(f"topic {topic} is gone")
            continue
        now = view.ends.get(topic)
        if now is None:
            continue  # not looked at this time
        for p in sorted(set(observed) | set(acked)):
            current = now.get(p)
            if current is None:
                reasons.append(f"{topic}[{p}] is gone")
            elif current < observed.get(p, 0):
                reasons.append(
                    f"{topic}[{p}] ends at {current}, below the {observed[p]} it reached"
                )
            elif current < acked.get(p, 0):
                suspects.append((topic, p, acked[p] - 1))
    return Verdict(reasons, suspects)


def ack_losses(marks: BrokerMarks, acks: Iterable[Ack]) -> list[str]:
    """Why these acknowledgements show a log that started again (empty: they do not)."""
    reasons = []
    for ack in acks:
        mark = max(
            marks.ends.get(ack.topic, {}).get(ack.partition, 0),
            marks.acked.get(ack.topic, {}).get(ack.partition, 0),
        )
        if 0 <= ack.offset < mark:
            reasons.append(
                f"{ack.topic}[{ack.partition}] took a record at offset {ack.offset}, "
                f"below the {mark} it reached"
            )
    return reasons
