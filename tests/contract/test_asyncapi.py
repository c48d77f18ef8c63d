"""docs/events.asyncapi.yaml matches the event models and is a valid AsyncAPI 3 document."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "events.asyncapi.yaml"
VALIDATOR = ROOT / "scripts" / "asyncapi"
NODE_DIR = ROOT / ".local" / "asyncapi-validate"


def _render() -> str:
    spec = importlib.util.spec_from_file_location(
        "gen_asyncapi", ROOT / "scripts" / "gen_asyncapi.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.render())


def test_the_committed_document_matches_the_event_models() -> None:
    assert DOC.read_text(encoding="utf-8") == _render(), (
        "docs/events.asyncapi.yaml drifted from the event models: run `make docs`"
    )


@pytest.fixture(scope="module")
def validator() -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node and npm are needed to validate the AsyncAPI document")
        pytest.skip("node/npm not installed")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "validate.mjs"):
        shutil.copy(VALIDATOR / name, NODE_DIR / name)
    if not (NODE_DIR / "node_modules" / "@asyncapi" / "parser").exists():
        subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            timeout=300,
        )
    return [node, str(NODE_DIR / "validate.mjs")]


def test_the_document_is_valid_for_the_official_asyncapi_parser(validator: list[str]) -> None:
    result = subprocess.run([*validator, str(DOC)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_rejects_a_broken_document(validator: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        DOC.read_text(encoding="utf-8").replace("action: send", "action: shout", 1),
        encoding="utf-8",
    )
    result = subprocess.run([*validator, str(broken)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
