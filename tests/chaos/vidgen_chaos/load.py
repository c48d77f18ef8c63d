"""The load: many users generating through the REST API, the way a good client behaves.

Each user uploads one prompt image, then sends its generate requests at the planned moments,
each with its own ``Idempotency-Key``, retried with backoff on connection errors and 5xx (and
after ``Retry-After`` on 429) until ``request_deadline_s``. Every prompt carries a marker
(``chaos-<seed>-<n>``) that the Runway simulator records with the task, so each Runway task
can be traced to its generation without asking vidgen. A few prompts carry a moderation word.
"""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from PIL import Image

from vidgen_common.devtokens import DevTokenSettings, mint_dev_token

MODERATION_WORD = "chaosbanned"
TERMINAL = ("completed", "failed", "cancelled")
IMAGES = 4  # distinct prompt images (renders are cached per image)


@dataclass(frozen=True)
class Planned:
    n: int
    user: str
    at_s: float
    marker: str
    moderated: bool

    @property
    def prompt(self) -> str:
        word = f" {MODERATION_WORD}" if self.moderated else ""
        return f"{self.marker} a slow pan over the scene{word}"


def plan(
    seed: int, generations: int, per_user: int, load_s: float, moderated: int
) -> list[Planned]:
    rng = random.Random(f"load-{seed}")
    users = [f"chaos-u{i:03d}" for i in range(max(1, -(-generations // per_user)))]
    owners = [users[i % len(users)] for i in range(generations)]
    rng.shuffle(owners)
    banned = set(rng.sample(range(generations), min(moderated, generations)))
    return [
        Planned(n, owners[n], round(rng.uniform(0, load_s), 2), f"chaos-{seed}-{n}", n in banned)
        for n in range(generations)
    ]


def png(variant: int) -> bytes:
    """A gradient PNG, different per variant, large enough for the gateway (≥ 256 px)."""
    width, height = 320 + 16 * variant, 256
    img = Image.new("RGB", (width, height))
    img.putdata(
        [(x % 256, y % 256, (variant * 60) % 256) for y in range(height) for x in range(width)]
    )
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


@dataclass
class Outcome:
    planned: Planned
    generation_id: str | None = None
    accepted_at: datetime | None = None
    refused: str | None = None  # why it was not accepted (a 4xx, or out of time)


OnUser = Callable[[httpx.AsyncClient, str, dict[str, str]], Awaitable[None]]


@dataclass
class Load:
    gateway: str
    request_deadline_s: float = 180.0
    on_user: OnUser | None = None  # run once per user before its first upload (webhooks)
    outcomes: list[Outcome] = field(default_factory=list)
    retries: dict[str, int] = field(default_factory=dict)  # why requests were retried
    _projects: dict[str, asyncio.Future[str]] = field(default_factory=dict)

    def token(self, user: str) -> str:
        return mint_dev_token(DevTokenSettings(), user)

    def _headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    async def _call(
        self, client: httpx.AsyncClient, method: str, url: str, **kw: Any
    ) -> httpx.Response | str:
        """The answer (2xx or a final 4xx), or why we gave up, retrying what a client should."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_deadline_s
        delay = 0.5
        while True:
            try:
                response = await client.request(method, url, **kw)
            except httpx.TransportError as exc:
                reason = type(exc).__name__
                wait = delay
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                reason = str(response.status_code)
                wait = delay
                if response.status_code == 429:
                    wait = min(15.0, float(response.headers.get("retry-after", delay)))
            self.retries[reason] = self.retries.get(reason, 0) + 1
            if loop.time() + wait > deadline:
                return f"gave up after {self.request_deadline_s:.0f} s (last: {reason})"
            await asyncio.sleep(wait * random.uniform(0.8, 1.2))
            delay = min(8.0, delay * 2)

    async def _project(self, client: httpx.AsyncClient, user: str, variant: int) -> str:
        if user not in self._projects:
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._projects[user] = future
            if self.on_user is not None:
                await self.on_user(client, user, self._headers(user))
            files = {"file": ("prompt.png", png(variant), "image/png")}
            answer = await self._call(
                client, "POST", "/api/images/upload", files=files, headers=self._headers(user)
            )
            if isinstance(answer, str) or answer.status_code != 201:
                future.set_exception(RuntimeError(f"upload of {user} failed: {_text(answer)}"))
            else:
                future.set_result(str(answer.json()["projectId"]))
        return await asyncio.shield(self._projects[user])

    async def _generate(self, client: httpx.AsyncClient, p: Planned, t0: float) -> None:
        outcome = Outcome(p)
        self.outcomes.append(outcome)
        await asyncio.sleep(max(0.0, t0 + p.at_s - asyncio.get_running_loop().time()))
        try:
            project = await self._project(client, p.user, int(p.user[-3:]) % IMAGES)
        except RuntimeError as exc:
            outcome.refused = str(exc)
            return
        headers = {**self._headers(p.user), "Idempotency-Key": p.marker}
        body = {"projectId": project, "prompt": p.prompt}
        answer = await self._call(
            client, "POST", "/api/videos/generate", json=body, headers=headers
        )
        if isinstance(answer, str) or answer.status_code != 202:
            outcome.refused = _text(answer)
            return
        outcome.generation_id = str(answer.json()["generationId"])
        outcome.accepted_at = datetime.now(UTC)

    async def run(self, planned: list[Planned], t0: float) -> None:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=self.gateway, timeout=30, limits=limits) as client:
            await asyncio.gather(*(self._generate(client, p, t0) for p in planned))

    def accepted(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.generation_id is not None]

    async def statuses(self, within_s: float, every_s: float = 2.0) -> dict[str, dict[str, Any]]:
        """Each accepted generation's last view, polled until all are terminal or time is up."""
        views: dict[str, dict[str, Any]] = {}
        todo = {o.generation_id: o.planned.user for o in self.accepted() if o.generation_id}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        gate = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=self.gateway, timeout=10) as client:

            async def look(gid: str, user: str) -> None:
                async with gate:
                    try:
                        r = await client.get(
                            f"/api/videos/status/{gid}", headers=self._headers(user)
                        )
                    except httpx.TransportError:
                        return
                if r.status_code == 200:
                    views[gid] = r.json()

            while True:
                pending = {
                    g: u for g, u in todo.items() if views.get(g, {}).get("status") not in TERMINAL
                }
                if not pending or loop.time() > deadline:
                    return views
                await asyncio.gather(*(look(g, u) for g, u in pending.items()))
                await asyncio.sleep(every_s)


def _text(answer: httpx.Response | str) -> str:
    if isinstance(answer, str):
        return answer
    return f"HTTP {answer.status_code}: {answer.text[:200]}"
