"""What counts as the broker losing data, and what does not (retention, lagging ends)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vidgen_common.bus.loss import Ack, BrokerMarks, BrokerView, ack_losses, losses

MARKS = BrokerMarks("c1", {"t": {0: 5, 1: 0}, "empty": {0: 0}}, {"t": {0: 5}})


def view(
    ends: dict[str, dict[int, int]], *, missing: frozenset[str] = frozenset(), cluster: str = "c1"
) -> BrokerView:
    return BrokerView(cluster, ends, missing)


def test_a_log_that_kept_its_end_or_grew_is_no_loss() -> None:
    assert losses(MARKS, view({"t": {0: 5, 1: 0}, "empty": {0: 0}})).reasons == []
    found = losses(MARKS, view({"t": {0: 9, 1: 3, 2: 0}, "empty": {0: 1}}))
    assert (found.reasons, found.suspects) == ([], [])


def test_an_end_that_moved_backwards_is_loss() -> None:
    assert losses(MARKS, view({"t": {0: 2, 1: 0}, "empty": {0: 0}})).reasons == [
        "t[0] ends at 2, below the 5 it reached"
    ]


def test_an_end_below_an_acknowledged_offset_is_a_suspicion_to_read_back() -> None:
    marks = BrokerMarks("c1", {"t": {0: 3}}, {"t": {0: 7}})
    found = losses(marks, view({"t": {0: 6}}))
    assert (found.reasons, found.suspects) == ([], [("t", 0, 6)])


def test_a_topic_that_held_records_and_is_gone_is_loss_an_empty_one_is_not() -> None:
    assert losses(MARKS, view({}, missing=frozenset({"t", "empty"}))).reasons == ["topic t is gone"]
    assert losses(MARKS, view({"t": {0: 5, 1: 0}}, missing=frozenset({"empty"}))).reasons == []
    only_acked = BrokerMarks("c1", {}, {"u": {2: 1}})
    assert losses(only_acked, view({}, missing=frozenset({"u"}))).reasons == ["topic u is gone"]


def test_a_partition_that_held_records_and_is_gone_is_loss() -> None:
    assert losses(MARKS, view({"t": {1: 0}, "empty": {0: 0}})).reasons == ["t[0] is gone"]


def test_another_cluster_is_loss() -> None:
    found = losses(MARKS, view({"t": {0: 5, 1: 0}}, cluster="c2")).reasons
    assert found == ["the cluster id changed from c1 to c2"]


def test_a_topic_not_looked_at_is_not_judged() -> None:
    assert losses(MARKS, view({"empty": {0: 0}})).reasons == []


def test_acks_below_a_mark_show_a_log_that_started_again() -> None:
    assert ack_losses(MARKS, [Ack("t", 0, 5), Ack("t", 1, 0), Ack("new", 0, 0)]) == []
    assert ack_losses(MARKS, [Ack("t", 0, 0)]) == [
        "t[0] took a record at offset 0, below the 5 it reached"
    ]
    assert ack_losses(MARKS, [Ack("t", 0, -1)]) == []  # no offset given: nothing to judge


def test_marks_rise_with_views_and_acks_and_survive_json() -> None:
    marks = MARKS.observe(view({"t": {0: 7, 1: 0}})).acknowledged([Ack("t", 1, 4), Ack("u", 0, 0)])
    assert marks.ends == {"t": {0: 7, 1: 0}, "empty": {0: 0}}
    assert marks.acked == {"t": {0: 5, 1: 5}, "u": {0: 1}}
    assert BrokerMarks.from_json(marks.to_json()) == marks
    assert BrokerMarks.from_json(None) == BrokerMarks()


grow = st.dictionaries(st.integers(0, 3), st.integers(0, 50), max_size=4)


@given(
    st.lists(
        st.tuples(grow, st.lists(st.integers(0, 3), max_size=4), st.integers(0, 2)), max_size=8
    )
)
def test_a_broker_whose_logs_only_grow_is_never_taken_for_a_loss(
    steps: list[tuple[dict[int, int], list[int], int]],
) -> None:
    """Whatever the order of views and produces, and even when the broker reports ends a
    record or two behind what it holds: growth (or retention) is never called a loss; at most
    a suspicion, which reading the record back clears."""
    marks = BrokerMarks("c")
    log: dict[int, int] = {}  # the real end of each partition
    reported: dict[int, int] = {}  # what the broker says (lagging, never backwards)
    for more, produced, lag in steps:
        for p, n in more.items():
            log[p] = log.get(p, 0) + n  # others wrote n records (or retention: end unchanged)
        acks = []
        for p in produced:
            acks.append(Ack("t", p, log.get(p, 0)))
            log[p] = log.get(p, 0) + 1
        assert ack_losses(marks, acks) == []
        marks = marks.acknowledged(acks)
        for p, end in log.items():
            reported[p] = max(reported.get(p, 0), end - lag)
        now = BrokerView("c", {"t": dict(reported)})
        verdict = losses(marks, now)
        assert verdict.reasons == []
        assert all(offset < log[p] for _, p, offset in verdict.suspects)  # held: cleared
        marks = marks.observe(now)
