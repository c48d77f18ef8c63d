"""`make run`'s process list: which processes fetch from the broker with a short bound."""

from __future__ import annotations

from scripts.run import (
    GENERATOR_FETCH_MAX_WAIT_MS,
    NOTIFIER_FETCH_MAX_WAIT_MS,
    build,
    started_by_up,
)


def _bounds(env: dict[str, str]) -> dict[str, str | None]:
    return {p.name: p.env.get("KAFKA_FETCH_MAX_WAIT_MS") for p in build(env, 8100, 8000)}


def test_the_generator_worker_and_the_notifier_fetch_with_a_short_bound() -> None:
    bounds = _bounds({})
    assert bounds["generator"] == str(GENERATOR_FETCH_MAX_WAIT_MS)
    assert bounds["notifier"] == str(NOTIFIER_FETCH_MAX_WAIT_MS)
    # the others keep Kafka's default: a short bound on the gateway's projection made its own
    # hop slower on the local broker (bench/pipeline.py)
    for name in ("gateway", "poller", "media", "generator-relay", "gateway-relay"):
        assert bounds[name] is None, name


def test_a_bound_the_user_set_wins() -> None:
    bounds = _bounds({"KAFKA_FETCH_MAX_WAIT_MS": "500"})
    assert {bounds["generator"], bounds["notifier"], bounds["media"]} == {"500"}


_UP = """nanio: running (pid 101)
kafka-store: running (pid 102)
tansu: running (pid 103)
postgres: running (pid 104)
"""


def test_make_run_leaves_running_the_infrastructure_it_found_running() -> None:
    # four parts since the broker has its own object store: all were running before
    assert not started_by_up(_UP, _UP)
    # in-memory broker storage: the store is not started, nothing else changed
    memory = _UP.replace("kafka-store: running (pid 102)", "kafka-store: stopped")
    assert not started_by_up(memory, memory)


def test_make_run_stops_what_it_started() -> None:
    assert started_by_up(_UP.replace("running (pid 104)", "stopped"), _UP)
    assert started_by_up("nanio: stopped\nkafka-store: stopped\ntansu: stopped\n", _UP)
    # restarted by up (its pid changed): up started it
    assert started_by_up(_UP, _UP.replace("pid 103", "pid 203"))
