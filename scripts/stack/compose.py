"""docker-compose.yml as Compose reads it: files merged, variables interpolated, profiles.

:func:`load` gives the project the way ``docker compose -f a.yml -f b.yml`` sees it: later
files merge into earlier ones (mappings key by key, a list or scalar replaces), ``${VAR}``
forms are interpolated from the environment and an ``.env`` file beside the first file (the
environment wins), and services are selected by ``COMPOSE_PROFILES``. Only the keys this
project uses are accepted (:data:`SUPPORTED`): an unknown key is an error, never ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scripts.stack.errors import ComposeError

SUPPORTED = frozenset(
    {
        "build", "cap_drop", "command", "depends_on", "entrypoint", "environment",
        "extra_hosts", "healthcheck", "image", "init", "network_mode", "ports", "profiles",
        "pull_policy", "read_only", "restart", "security_opt", "stop_grace_period",
        "stop_signal", "tmpfs", "ulimits", "user", "volumes",
    }
)  # fmt: skip

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
)


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """Compose's interpolation (``${V}``, ``${V:-d}``, ``${V-d}``, ``${V:?e}``, ``${V:+r}``)."""
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        is_set, non_empty = name in environ, bool(environ.get(name))
        if op in (":-", "-"):
            return environ[name] if (non_empty if op == ":-" else is_set) else arg
        if op in (":+", "+"):
            return arg if (non_empty if op == ":+" else is_set) else ""
        if op in (":?", "?") and not (non_empty if op == ":?" else is_set):
            raise ComposeError(f"{name}: {arg}")
        return environ.get(name, "")

    return _VARIABLE.sub(substitute, value)


def merge(base: Any, override: Any) -> Any:
    """An override file's value over a base file's: mappings merge, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return override


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a Compose ``.env`` file (comments and blanks skipped)."""
    env: dict[str, str] = {}
    if path.is_file():
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip().strip("'\"")
    return env


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (mapping or ``KEY=VALUE`` list) as strings."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


@dataclass(frozen=True)
class Project:
    """The services of a project after merging, interpolation and profile selection."""

    name: str
    directory: Path
    services: dict[str, dict[str, Any]]
    volumes: frozenset[str]

    def service(self, name: str) -> dict[str, Any]:
        try:
            return self.services[name]
        except KeyError:
            raise ComposeError(f"no service {name!r} in the project") from None

    def order(self) -> list[str]:
        """Service names, each after every service it depends on."""
        done: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in done:
                return
            if name in visiting:
                raise ComposeError(f"a dependency cycle through {name}")
            visiting.add(name)
            for target in dependencies(self, name):
                visit(target)
            visiting.discard(name)
            done.append(name)

        for name in self.services:
            visit(name)
        return done


def dependencies(project: Project, name: str) -> dict[str, str]:
    """The services ``name`` waits for, with their condition (absent optional ones left out)."""
    depends = project.service(name).get("depends_on", {})
    if isinstance(depends, list):
        depends = {target: {} for target in depends}
    found: dict[str, str] = {}
    for target, rule in depends.items():
        if target not in project.services:
            if rule.get("required", True):
                raise ComposeError(f"{name} depends on {target}, which is not selected")
            continue
        found[target] = rule.get("condition", "service_started")
    return found


def load(
    files: list[Path],
    environ: Mapping[str, str] | None = None,
    name: str | None = None,
    *,
    all_profiles: bool = False,
) -> Project:
    """The project of these Compose files, as ``docker compose -f … -f …`` would run it.

    ``all_profiles`` selects every service, whatever its profiles (``--profile '*'``).
    """
    if not files:
        raise ComposeError("no Compose file given")
    directory = files[0].resolve().parent
    env = {**read_env_file(directory / ".env"), **(os.environ if environ is None else environ)}
    document: Any = {}
    for path in files:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ComposeError(f"{path}: not a Compose mapping")
        document = merge(document, loaded)
    document = interpolate(document, env)
    profiles = {p for p in env.get("COMPOSE_PROFILES", "").split(",") if p}
    services: dict[str, dict[str, Any]] = {}
    for service_name, service in document.get("services", {}).items():
        unknown = set(service) - SUPPORTED
        if unknown:
            raise ComposeError(f"{service_name}: unsupported keys {sorted(unknown)}")
        wanted = set(service.get("profiles", []))
        if all_profiles or not wanted or wanted & profiles:
            services[service_name] = service
    project_name = name or env.get("COMPOSE_PROJECT_NAME") or document.get("name") or "default"
    return Project(
        name=str(project_name),
        directory=directory,
        services=services,
        volumes=frozenset(document.get("volumes", {}) or {}),
    )
