"""The webhook side of a chaos run: a receiver that misbehaves, and what it saw.

Every user registers, through the gateway, one *main* endpoint (every event type) on the
suite's own receiver; every fourth user also registers a *gone* endpoint that always answers
``410`` (its disabling is expected). The main endpoints answer at random, drawn from the
run's seed: a 5xx, a hang past the notifier's timeout, a ``429`` with ``Retry-After``, or a
``204``. Each request is recorded (path, ``webhook-id``, type, generation, answer, time) and
its ``v1`` signature checked with ``standardwebhooks`` where the endpoint's secret is known.
The receiver deduplicates by ``webhook-id``: an id answered 2xx twice is a duplicate delivery
(allowed: at-least-once), two ids for one (event, endpoint) are not.

:func:`judge_webhooks` is pure: the invariants below, from the receiver's records and the
endpoints the API lists at the end.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets as tokens
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

TERMINAL_TYPES = ("generation.completed", "generation.failed", "generation.cancelled")
ALL_TYPES = (*TERMINAL_TYPES, "generation.progressed")
# Settings the run gives the notifier: retries within seconds, a short timeout (a hang passes
# it), a lease that brings back a killed attempt soon, loopback receivers admitted.
TIMEOUT_S = 2.0
NOTIFIER_ENV = {
    "VIDGEN_WEBHOOK_ALLOWED_TARGETS": "127.0.0.1",
    "VIDGEN_WEBHOOK_SCHEDULE_SCALE": "0.001",
    "VIDGEN_WEBHOOK_TIMEOUT_S": str(TIMEOUT_S),
    "VIDGEN_WEBHOOK_LEASE_S": "5",
}
# How the main endpoints answer (the rest: 204).
P_5XX, P_HANG, P_429 = 0.12, 0.04, 0.08
GONE_EVERY = 4  # every fourth user also has an endpoint answering 410


@dataclass(frozen=True)
class Hit:
    path: str
    webhook_id: str
    type: str
    generation_id: str
    progress: float | None
    answer: str  # "204", "503", "429", "hang", "410"
    at: float
    signed: bool | None  # v1 verified (None: secret unknown, e.g. a create whose answer was lost)


@dataclass
class WebhookEvidence:
    hits: list[Hit] = field(default_factory=list)
    endpoints: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # user → listed
    registered: dict[str, str] = field(default_factory=dict)  # path → user
    users_of: dict[str, str] = field(default_factory=dict)  # generation → user
    errors: list[str] = field(default_factory=list)  # registration or listing problems


class ChaosReceiver:
    """The misbehaving receiver (a thread of its own on 127.0.0.1)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"webhooks-{seed}")
        self._lock = threading.Lock()
        self.secrets: dict[str, str] = {}  # path → whsec_
        self.hits: list[Hit] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def decide(self, path: str) -> str:
        if path.startswith("/gone/"):
            return "410"
        with self._lock:
            draw = self._rng.random()
            status = self._rng.choice(("500", "502", "503", "504"))
        if draw < P_5XX:
            return status
        if draw < P_5XX + P_HANG:
            return "hang"
        if draw < P_5XX + P_HANG + P_429:
            return "429"
        return "204"

    def record(self, path: str, headers: dict[str, str], body: bytes, answer: str) -> None:
        try:
            event = json.loads(body)
            data = event.get("data") or {}
        except ValueError:
            event, data = {}, {}
        secret = self.secrets.get(path)
        signed: bool | None = None
        if secret is not None:
            try:
                Webhook(secret).verify(body, headers)
                signed = True
            except WebhookVerificationError:
                signed = False
        hit = Hit(
            path,
            headers.get("webhook-id", ""),
            str(event.get("type", "")),
            str(data.get("generationId", "")),
            data.get("progress"),
            answer,
            time.time(),
            signed,
        )
        with self._lock:
            self.hits.append(hit)


def _handler(receiver: ChaosReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = receiver.decide(self.path)
            receiver.record(self.path, headers, body, answer)
            if answer == "hang":
                time.sleep(TIMEOUT_S * 2)  # the notifier gave up long before
                return
            self.send_response(int(answer))
            if answer == "429":
                self.send_header("retry-after", "1")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


async def register(
    client: httpx.AsyncClient,
    receiver: ChaosReceiver,
    user: str,
    n_user: int,
    headers: dict[str, str],
    ev: WebhookEvidence,
    deadline_s: float = 180.0,
) -> None:
    """The user's endpoints, each create retried (a fresh path per attempt, so an endpoint
    whose answer was lost is told apart: the listing at the end shows it)."""
    kinds = [("main", list(ALL_TYPES))]
    if n_user % GONE_EVERY == 0:
        kinds.append(("gone", list(TERMINAL_TYPES)))
    loop = asyncio.get_running_loop()
    for kind, events in kinds:
        end = loop.time() + deadline_s
        while True:
            path = f"/{kind}/{user}/{tokens.token_hex(4)}"
            ev.registered[path] = user
            body = {"url": receiver.url(path), "events": events}
            try:
                r = await client.post("/api/webhooks", json=body, headers=headers)
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code == 201:
                receiver.secrets[path] = r.json()["secret"]
                break
            if r is not None and r.status_code < 500 and r.status_code != 429:
                ev.errors.append(f"{user}: create answered {r.status_code} {r.text[:120]}")
                break
            if loop.time() > end:
                ev.errors.append(f"{user}: no endpoint registered within {deadline_s:.0f} s")
                break
            await asyncio.sleep(random.uniform(0.5, 1.5))


async def list_endpoints(
    gateway: str, users: list[str], token: Callable[[str], str], ev: WebhookEvidence
) -> None:
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        for user in users:
            for _ in range(30):
                try:
                    r = await client.get(
                        "/api/webhooks", headers={"Authorization": f"Bearer {token(user)}"}
                    )
                except httpx.TransportError:
                    r = None
                if r is not None and r.status_code == 200:
                    ev.endpoints[user] = list(r.json()["items"])
                    break
                await asyncio.sleep(1)
            else:
                ev.errors.append(f"{user}: the endpoints could not be listed")


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def expected(ev: WebhookEvidence, statuses: dict[str, str]) -> set[tuple[str, str, str]]:
    """(path, type, generation): each terminal event for each enabled main endpoint."""
    wanted = set()
    for gid, status in statuses.items():
        user = ev.users_of.get(gid)
        if status not in ("completed", "failed", "cancelled") or user is None:
            continue
        for ep in ev.endpoints.get(user, []):
            path = _path(ep["url"])
            if path.startswith("/main/") and ep["enabled"]:
                wanted.add((path, f"generation.{status}", gid))
    return wanted


def acked(hits: list[Hit]) -> set[tuple[str, str, str]]:
    return {(h.path, h.type, h.generation_id) for h in hits if h.answer.startswith("2")}


def missing(ev: WebhookEvidence, statuses: dict[str, str]) -> set[tuple[str, str, str]]:
    return expected(ev, statuses) - acked(ev.hits)


AddRow = Callable[[str, object, "bool | None"], None]
Flag = Callable[["str | None", str], None]


def judge_webhooks(ev: WebhookEvidence, statuses: dict[str, str], add: AddRow, flag: Flag) -> None:
    """The webhook invariants (``add`` a row, ``flag`` a generation)."""
    hits = ev.hits
    answers = Counter(
        h.answer if h.answer in ("204", "hang", "429", "410") else "5xx" for h in hits
    )
    add(
        "webhook requests by answer",
        ", ".join(f"{a} {n}" for a, n in sorted(answers.items())),
        None,
    )
    first_ack: dict[str, Hit] = {}
    dup = 0
    for h in sorted(hits, key=lambda h: h.at):
        if h.answer.startswith("2"):
            if h.webhook_id in first_ack:
                dup += 1
            else:
                first_ack[h.webhook_id] = h
    per_event = Counter((h.path, h.type, h.generation_id) for h in first_ack.values())
    add("webhooks delivered (distinct webhook-ids answered 2xx)", len(first_ack), None)
    add("duplicate deliveries of one webhook-id (allowed)", dup, None)
    for problem in ev.errors:
        flag(None, f"webhooks: {problem}")
    add("webhook endpoints registered and listed", "; ".join(ev.errors[:3]) or "yes", not ev.errors)

    want = expected(ev, statuses)
    lost = want - acked(hits)
    for path, kind, gid in sorted(lost):
        seen = [h.answer for h in hits if (h.path, h.type, h.generation_id) == (path, kind, gid)]
        flag(gid, f"{kind} never answered 2xx at {path} (requests: {seen or 'none'})")
    add(
        "terminal events delivered to every enabled endpoint",
        f"{len(want) - len(lost)} / {len(want)}",
        not lost and bool(want),
    )

    ids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for h in hits:
        if h.type in TERMINAL_TYPES:
            ids[(h.path, h.type, h.generation_id)].add(h.webhook_id)
    two = {k: v for k, v in ids.items() if len(v) > 1}
    for (path, kind, gid), found in sorted(two.items()):
        flag(gid, f"{kind} at {path} came with {len(found)} webhook-ids: {sorted(found)}")
    add("two webhook-ids for one (event, endpoint) (must be 0)", len(two), not two)
    once = sum(1 for k in want if per_event.get(k) == 1)
    add("terminal events counted once per endpoint at the receiver", f"{once} / {len(want)}", None)

    disorder = 0
    by_pair: dict[tuple[str, str], list[Hit]] = defaultdict(list)
    for h in first_ack.values():
        by_pair[(h.path, h.generation_id)].append(h)
    for (path, gid), acks in by_pair.items():
        acks.sort(key=lambda h: h.at)
        kinds = [h.type for h in acks]
        progress = [h.progress or 0.0 for h in acks if h.type == "generation.progressed"]
        terminal_last = all(k not in TERMINAL_TYPES for k in kinds[:-1])
        if not terminal_last or progress != sorted(progress):
            disorder += 1
            flag(gid, f"out of order at {path}: {[(h.type, h.progress) for h in acks]}")
    add("generations delivered out of order to an endpoint (must be 0)", disorder, not disorder)

    bad = [h for h in hits if h.signed is False]
    for h in bad[:20]:
        flag(h.generation_id or None, f"bad v1 signature at {h.path} ({h.webhook_id})")
    add("requests with a bad v1 signature (must be 0)", len(bad), not bad)

    answered_410 = {h.path for h in hits if h.answer == "410"}
    gone = [ep for eps in ev.endpoints.values() for ep in eps if _path(ep["url"]) in answered_410]
    alive = [ep for ep in gone if ep["enabled"] or "410" not in (ep.get("disabledReason") or "")]
    for ep in alive:
        flag(None, f"webhooks: {ep['url']} answered 410 but is {ep}")
    add(
        "endpoints answering 410 disabled",
        f"{len(gone) - len(alive)} / {len(gone)}",
        not alive,
    )
    main_off = [
        ep
        for eps in ev.endpoints.values()
        for ep in eps
        if _path(ep["url"]).startswith("/main/") and not ep["enabled"]
    ]
    for ep in main_off:
        flag(None, f"webhooks: {ep['url']} disabled: {ep.get('disabledReason')}")
    add("main endpoints disabled (they never answer 410: must be 0)", len(main_off), not main_off)
