"""The webhook invariants of the chaos suite, on made-up receiver records: each breakage of
the contract (a lost terminal event, a second webhook-id, disorder, a bad signature, a 410
endpoint left enabled) must be reported, and a clean run must not be."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from vidgen_chaos.webhooks import Hit, WebhookEvidence, judge_webhooks

MAIN, GONE = "/main/u000/aa", "/gone/u000/bb"


def hit(
    path: str, wid: str, kind: str, at: float, answer: str = "204", progress: float | None = None
) -> Hit:
    return Hit(path, wid, f"generation.{kind}", "g1", progress, answer, at, True)


def clean() -> WebhookEvidence:
    ev = WebhookEvidence(users_of={"g1": "u000"})
    ev.endpoints = {
        "u000": [
            {"url": f"http://127.0.0.1:1{MAIN}", "enabled": True},
            {"url": f"http://127.0.0.1:1{GONE}", "enabled": False, "disabledReason": "410 Gone"},
        ]
    }
    ev.hits = [
        hit(MAIN, "msg_p1", "progressed", 1, progress=0.3),
        hit(MAIN, "msg_p2", "progressed", 2, "503", progress=0.6),
        hit(MAIN, "msg_p2", "progressed", 3, progress=0.6),
        hit(MAIN, "msg_c", "completed", 4, "hang"),
        hit(MAIN, "msg_c", "completed", 5),
        hit(MAIN, "msg_c", "completed", 6),  # a duplicate after a kill: allowed
        hit(GONE, "msg_g", "completed", 2, "410"),
    ]
    return ev


def broken(ev: WebhookEvidence) -> list[str]:
    rows: list[tuple[str, bool | None]] = []
    judge_webhooks(
        ev, {"g1": "completed"}, lambda n, v, ok: rows.append((n, ok)), lambda g, why: None
    )
    return [name for name, ok in rows if ok is False]


def test_a_clean_run_breaks_nothing() -> None:
    assert broken(clean()) == []


def _lost(ev: WebhookEvidence) -> None:
    ev.hits = [h for h in ev.hits if h.type != "generation.completed" or h.answer != "204"]


def _second_id(ev: WebhookEvidence) -> None:
    ev.hits.append(hit(MAIN, "msg_other", "completed", 7))


def _disorder(ev: WebhookEvidence) -> None:
    ev.hits.append(hit(MAIN, "msg_p3", "progressed", 8, progress=0.9))


def _bad_signature(ev: WebhookEvidence) -> None:
    h = ev.hits[0]
    ev.hits[0] = Hit(
        h.path, h.webhook_id, h.type, h.generation_id, h.progress, h.answer, h.at, False
    )


def _gone_enabled(ev: WebhookEvidence) -> None:
    ev.endpoints["u000"][1] = {"url": f"http://127.0.0.1:1{GONE}", "enabled": True}


def _main_disabled(ev: WebhookEvidence) -> None:
    ev.endpoints["u000"][0]["enabled"] = False


@pytest.mark.parametrize(
    ("breakage", "row"),
    [
        (_lost, "terminal events delivered to every enabled endpoint"),
        (_second_id, "two webhook-ids for one (event, endpoint) (must be 0)"),
        (_disorder, "generations delivered out of order to an endpoint (must be 0)"),
        (_bad_signature, "requests with a bad v1 signature (must be 0)"),
        (_gone_enabled, "endpoints answering 410 disabled"),
        (_main_disabled, "main endpoints disabled (they never answer 410: must be 0)"),
    ],
)
def test_each_breakage_is_reported(breakage: Callable[[WebhookEvidence], None], row: str) -> None:
    ev = clean()
    breakage(ev)
    assert row in broken(ev)
