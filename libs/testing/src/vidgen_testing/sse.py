"""Reading Server-Sent Events in tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx


class Stream:
    """Reads Server-Sent Events (and comments) from a streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next_event(self, within: float = 10) -> dict[str, Any] | None:
        """The next event, skipping comments and the retry field; None at the end."""
        return await asyncio.wait_for(self._next(), within)

    async def _next(self) -> dict[str, Any] | None:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if line == "":
                if "data" in fields:
                    return {
                        "id": int(fields["id"]),
                        "event": fields["event"],
                        "data": json.loads(fields["data"]),
                    }
                fields = {}
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        return None
