"""hadolint on the Dockerfiles (the one of every image, and the local infrastructure's).

The images themselves are built, checked and run by scripts/images.sh and
scripts/compose-e2e.sh (`make test-containers`); the linter adds the Dockerfile practices a
build does not prove (pinned bases, exec-form commands, no `cd`, …) in seconds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HADOLINT_CONFIG = Path(__file__).with_name("hadolint.yaml")
DOCKERFILES = ("Dockerfile", "deploy/compose/infra.Dockerfile")


def run_hadolint(hadolint: Path, dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(hadolint), "--config", str(HADOLINT_CONFIG), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_finds_nothing(hadolint: Path, dockerfile: str) -> None:
    result = run_hadolint(hadolint, REPO / dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_fails_on_a_warning(hadolint: Path, tmp_path: Path) -> None:
    """The linter really runs and fails at warning level (DL3006: an untagged image)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python\nCMD ["python"]\n')
    result = run_hadolint(hadolint, bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout


def test_there_is_one_dockerfile_for_the_services() -> None:
    found = sorted(
        str(p.relative_to(REPO))
        for p in REPO.glob("**/*Dockerfile")
        if not {".venv", ".local", "node_modules"} & set(p.relative_to(REPO).parts)
    )
    assert found == sorted(DOCKERFILES)
