"""`vidgen token <user>` prints a token the gateway with the same settings accepts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vidgen_cli.main import app
from vidgen_gateway.auth import build_verifier
from vidgen_gateway.settings import GatewaySettings

SECRET = "cli-test-secret-0123456789abcdefghijkl"


async def test_token_is_accepted_by_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGEN_JWT_SECRET", SECRET)
    result = CliRunner().invoke(app, ["token", "alice"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    verifier = build_verifier(GatewaySettings(env="test"))
    assert await verifier.user_id(token) == "alice"


def test_token_refuses_bad_users_and_production(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = CliRunner().invoke(app, ["token", "a/b"])
    assert bad.exit_code == 2
    assert "user id" in bad.output
    monkeypatch.setenv("VIDGEN_ENV", "production")
    result = CliRunner().invoke(app, ["token", "alice"])
    assert result.exit_code == 2
    assert "not accepted" in result.output


def test_python_dash_m_runs_the_same_command() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "vidgen_cli", "token", "carol"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.count(".") == 2  # header.payload.signature


async def test_admin_token_carries_the_admin_role_and_a_plain_one_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIDGEN_JWT_SECRET", SECRET)
    verifier = build_verifier(GatewaySettings(env="test"))
    admin = CliRunner().invoke(app, ["token", "ops", "--admin"])
    plain = CliRunner().invoke(app, ["token", "ops"])
    assert admin.exit_code == plain.exit_code == 0
    assert (await verifier.principal(admin.stdout.strip())).roles == {"admin"}
    assert (await verifier.principal(plain.stdout.strip())).roles == frozenset()
