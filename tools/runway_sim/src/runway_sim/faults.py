"""The outermost ASGI layer: per-endpoint counting and injected faults.

Order for a request to a `/v1` endpoint: added latency → 5xx burst → 429 rate limit → the
real handler (auth, validation, ...). For creates, two faults are decided after the task was
created (and charged): `create_then_error` answers a 500, a 504 or a cut JSON body instead of
the task id; a "lost response" holds the answer back (`hang`) or cuts the connection (`drop`).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runway_sim.errors import DropConnection
from runway_sim.scenario import CreateThenErrorRule, FaultRule, LostCreateRule
from runway_sim.state import SimState


def classify(method: str, path: str) -> tuple[str | None, str | None]:
    """(endpoint name, task id) for counting and fault rules; (None, None) for admin paths."""
    if path == "/v1/image_to_video":
        return "create", None
    if path.startswith("/v1/tasks/") and "/" not in path[len("/v1/tasks/") :]:
        task_id = path[len("/v1/tasks/") :]
        return ("delete" if method == "DELETE" else "retrieve"), task_id
    if path == "/v1/organization":
        return "organization", None
    if path == "/v1/uploads":
        return "uploads", None
    if path.startswith("/_uploads/"):
        return "upload_file", None
    if path.startswith("/_outputs/"):
        return "output", None
    if path.startswith("/v1/"):
        return "other", None
    return None, None


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str]
) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


async def wait_for_disconnect(receive: Receive, timeout_s: float) -> bool:
    """True if the client went away within `timeout_s` (the request body must be consumed)."""

    async def _until_gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(_until_gone(), timeout_s)
    except TimeoutError:
        return False
    return True


async def abort_connection(send: Send, receive: Receive) -> None:
    """Close the TCP connection with no response at all.

    Uses the server transport behind uvicorn's `send` when reachable; otherwise starts a
    response and raises `DropConnection` so the server cuts it short.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()
        await wait_for_disconnect(receive, 1.0)
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]}
    )
    raise DropConnection("lost create response")


def _created_id(held: list[Message]) -> str | None:
    """The task id in a held create response (`{"id": ...}`), if it is one."""
    body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
    try:
        task_id = json.loads(body).get("id")
    except (ValueError, AttributeError):
        return None
    return task_id if isinstance(task_id, str) else None


class FaultLayer:
    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint, task_id = classify(scope["method"], scope["path"])
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        state = self.state
        if endpoint == "retrieve" and task_id:
            state.counters.retrieves_per_task[task_id] += 1
        status: list[int | str] = []

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self._handle(endpoint, scope, receive, counting_send, send, status)
        finally:
            state.counters.call(endpoint, status[0] if status else "none")

    def _fires(self, rule: FaultRule, endpoint: str) -> bool:
        return rule.applies_to(endpoint) and rule.fire(self.state.fault_rng)

    async def _handle(
        self,
        endpoint: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        raw_send: Send,
        status: list[int | str],
    ) -> None:
        scenario, state = self.state.scenario, self.state
        if self._fires(scenario.latency, endpoint):
            state.counters.fault("latency")
            rule = scenario.latency
            await asyncio.sleep(rule.seconds + rule.jitter_s * state.fault_rng.random())
        if self._fires(scenario.server_errors, endpoint):
            state.counters.fault("server_error")
            code = scenario.server_errors.status
            text = "Service unavailable, please retry." if code != 500 else "Internal error."
            await _send_json(send, code, {"error": text}, {})
            return
        if self._fires(scenario.rate_limit, endpoint):
            state.counters.fault("rate_limit")
            wait = scenario.rate_limit.retry_after_s
            headers = {
                "Retry-After": str(math.ceil(wait)),
                "retry-after-ms": str(round(wait * 1000)),
            }
            await _send_json(send, 429, {"error": "Too many requests. Please slow down."}, headers)
            return
        lost, then_error = scenario.lost_create, scenario.create_then_error
        if endpoint != "create" or not (_armed(lost) or _armed(then_error)):
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        created = bool(held) and held[0].get("status") == 200
        if created and then_error.fire(state.fault_rng):
            state.counters.fault(f"create_then_error_{then_error.mode}")
            await send_error_after_create(send, then_error.mode, held)
            return
        if not (created and lost.fire(state.fault_rng)):
            for message in held:
                await send(message)
            return
        state.counters.fault(f"lost_create_{lost.mode}")
        if (task_id := _created_id(held)) is not None:
            state.tag_fault(task_id, f"lost_create_{lost.mode}")
        status.append("lost")
        if lost.mode == "drop":
            await abort_connection(raw_send, receive)
            return
        if not await wait_for_disconnect(receive, lost.hang_s):
            for message in held:  # the client is still there: a very late answer
                await raw_send(message)


def _armed(rule: LostCreateRule | CreateThenErrorRule) -> bool:
    return rule.next_n > 0 or rule.rate > 0


_GATEWAY_TIMEOUT_HTML = (
    b"<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    b"<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"
)


async def send_error_after_create(send: Send, mode: str, held: list[Message]) -> None:
    """Answer a create whose task exists with a 500, a gateway's 504, or a cut JSON body."""
    if mode == "500":
        await _send_json(send, 500, {"error": "An unexpected error occurred."}, {})
        return
    if mode == "504":
        headers = [
            (b"content-type", b"text/html"),
            (b"content-length", str(len(_GATEWAY_TIMEOUT_HTML)).encode()),
        ]
        await send({"type": "http.response.start", "status": 504, "headers": headers})
        await send({"type": "http.response.body", "body": _GATEWAY_TIMEOUT_HTML})
        return
    body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
    cut = body[: max(1, len(body) // 2)]  # HTTP stays well-formed; the JSON does not
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(cut)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": cut})
