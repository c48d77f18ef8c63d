"""The web page's API client is generated from the gateway's OpenAPI document, and both
drift checks work: web/openapi.json against the gateway, src/api/schema.d.ts against it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"


def _gen() -> Any:
    path = ROOT / "scripts" / "gen_openapi.py"
    spec = importlib.util.spec_from_file_location("gen_openapi", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_spec_is_the_gateways() -> None:
    assert (WEB / "openapi.json").read_text(encoding="utf-8") == _gen().render(), (
        "web/openapi.json drifted from the gateway: run `make docs`"
    )


def test_the_spec_has_what_the_page_calls() -> None:
    paths = json.loads((WEB / "openapi.json").read_text(encoding="utf-8"))["paths"]
    for path in (
        "/api/models",
        "/api/dev/token",
        "/api/images/upload",
        "/api/videos/generate",
        "/api/videos/status/{generation_id}",
        "/api/videos",
        "/api/videos/{generation_id}/cancel",
        "/api/videos/{generation_id}/events",
    ):
        assert path in paths, path


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    ready = (WEB / "node_modules" / "openapi-typescript").is_dir()
    if not found or not ready:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node and web/node_modules (npm ci in web/) are needed")
        pytest.skip("node or web/node_modules missing")
    assert found is not None
    return found


def _copy(tmp: Path, spec: str) -> Path:
    web = tmp / "web"
    (web / "scripts").mkdir(parents=True)
    (web / "src" / "api").mkdir(parents=True)
    shutil.copy(WEB / "scripts" / "check-api.mjs", web / "scripts" / "check-api.mjs")
    shutil.copy(WEB / "src" / "api" / "schema.d.ts", web / "src" / "api" / "schema.d.ts")
    (web / "openapi.json").write_text(spec, encoding="utf-8")
    (web / "node_modules").symlink_to(WEB / "node_modules")
    return web


def test_the_client_matches_the_spec(node: str, tmp_path: Path) -> None:
    web = _copy(tmp_path, (WEB / "openapi.json").read_text(encoding="utf-8"))
    result = subprocess.run(
        [node, str(web / "scripts" / "check-api.mjs")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_build_check_fails_when_spec_and_client_drift(node: str, tmp_path: Path) -> None:
    spec = json.loads((WEB / "openapi.json").read_text(encoding="utf-8"))
    view = spec["components"]["schemas"]["GenerationView"]
    view["properties"]["queuePosition"] = {"type": "integer"}
    view["required"].append("queuePosition")
    web = _copy(tmp_path, json.dumps(spec))
    result = subprocess.run(
        [node, str(web / "scripts" / "check-api.mjs")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "npm run gen:api" in result.stderr
