"""A small client of vidgen's REST API (the CLI's only way to reach the system)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

TERMINAL = frozenset({"completed", "failed", "cancelled"})


class ApiError(Exception):
    """The API answered with an error (its JSON error shape), or not at all."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})" if status else message)
        self.status = status
        self.code = code


class Client:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, expect: int, **kw: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"{self._http.base_url}: {exc}") from exc
        if response.status_code != expect:
            raise _error(response)
        if response.status_code == 204:
            return {}
        body: dict[str, Any] = response.json()
        return body

    def upload(self, path: Path) -> dict[str, Any]:
        with path.open("rb") as f:
            return self._call("POST", "/api/images/upload", 201, files={"file": (path.name, f)})

    def generate(
        self, project_id: str, prompt: str, idempotency_key: str | None = None, **options: Any
    ) -> dict[str, Any]:
        body = {"projectId": project_id, "prompt": prompt}
        body |= {k: v for k, v in options.items() if v is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/api/videos/generate", 202, json=body, headers=headers)

    def status(self, generation_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/videos/status/{generation_id}", 200)

    def list(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._call("GET", "/api/videos", 200, params=params)

    def cancel(self, generation_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/videos/{generation_id}/cancel", 202)

    def usage(self) -> dict[str, Any]:
        return self._call("GET", "/api/usage", 200)

    def admin_usage(self, user_id: str) -> dict[str, Any]:
        return self._call("GET", "/api/admin/usage", 200, params={"userId": user_id})

    def budget(self, user_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/admin/budgets/{user_id}", 200)

    def set_budget(self, user_id: str, daily: int | None, monthly: int | None) -> dict[str, Any]:
        body = {"dailyCredits": daily, "monthlyCredits": monthly}
        return self._call("PUT", f"/api/admin/budgets/{user_id}", 200, json=body)

    def clear_budget(self, user_id: str) -> None:
        try:
            response = self._http.request("DELETE", f"/api/admin/budgets/{user_id}")
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"{self._http.base_url}: {exc}") from exc
        if response.status_code != 204:
            raise _error(response)

    def events(self, generation_id: str) -> Iterator[dict[str, Any]]:
        """Each state of the generation from the live stream, until a terminal one."""
        path = f"/api/videos/{generation_id}/events"
        with self._http.stream("GET", path, timeout=httpx.Timeout(30, read=None)) as stream:
            if stream.status_code == 204:
                yield self.status(generation_id)
                return
            if stream.status_code != 200:
                stream.read()
                raise _error(stream)
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    state: dict[str, Any] = json.loads(line[5:])
                    yield state
                    if state["status"] in TERMINAL:
                        return

    # --- webhooks (the gateway forwards /api/webhooks* to the notifier) ---------------------

    def webhook_create(
        self, url: str, events: Sequence[str] | None, description: str | None
    ) -> dict[str, Any]:
        wanted = None if events is None else [*events]
        body = {"url": url, "events": wanted, "description": description}
        return self._call("POST", "/api/webhooks", 201, json=_present(body))

    def webhook_list(self) -> dict[str, Any]:
        return self._call("GET", "/api/webhooks", 200)

    def webhook_get(self, endpoint_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/webhooks/{endpoint_id}", 200)

    def webhook_update(self, endpoint_id: str, **changes: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/api/webhooks/{endpoint_id}", 200, json=_present(changes))

    def webhook_delete(self, endpoint_id: str) -> None:
        self._call("DELETE", f"/api/webhooks/{endpoint_id}", 204)

    def webhook_rotate(self, endpoint_id: str, overlap_s: int | None) -> dict[str, Any]:
        body = _present({"overlapSeconds": overlap_s})
        return self._call("POST", f"/api/webhooks/{endpoint_id}/rotate-secret", 200, json=body)

    def webhook_ping(self, endpoint_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/webhooks/{endpoint_id}/ping", 202)

    def webhook_deliveries(
        self, endpoint_id: str, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        params = _present({"limit": limit, "cursor": cursor})
        return self._call("GET", f"/api/webhooks/{endpoint_id}/deliveries", 200, params=params)

    def webhook_redeliver(self, endpoint_id: str, delivery_id: str) -> dict[str, Any]:
        path = f"/api/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver"
        return self._call("POST", path, 202)

    def webhook_signing_key(self) -> dict[str, Any]:
        return self._call("GET", "/api/webhooks/signing-key", 200)

    def download(self, generation_id: str, out: Path) -> int:
        state = self.status(generation_id)
        if state["status"] != "completed" or not state.get("videoUrl"):
            raise ApiError(0, "not_ready", f"generation is {state['status']}, not completed")
        size = 0
        with httpx.stream("GET", state["videoUrl"], timeout=60) as response:
            if response.status_code != 200:
                raise ApiError(response.status_code, "download_failed", "the video URL refused")
            with out.open("wb") as f:
                for chunk in response.iter_bytes():
                    f.write(chunk)
                    size += len(chunk)
        return size


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields that were given (an absent one leaves the server's default or value)."""
    return {k: v for k, v in fields.items() if v is not None}


def _error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, "http_error", response.text[:200])
