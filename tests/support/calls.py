"""Calls the end-to-end tests make against a running system: the API, the CLI, polling."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.system import System

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "sample.png"


def poll(fn: Callable[[], Any], what: str, within: float = 90.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + within
    while not (value := fn()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(every)
    return value


def cli(system: System, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "vidgen_cli", "--api-url", system.gateway, *args],
        env=system.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def upload(client: httpx.Client) -> str:
    files = {"file": ("sample.png", SAMPLE.read_bytes(), "image/png")}
    response = client.post("/api/images/upload", files=files)
    assert response.status_code == 201, response.text
    return str(response.json()["projectId"])


def view(client: httpx.Client, gid: str) -> dict[str, Any]:
    response = client.get(f"/api/videos/status/{gid}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
