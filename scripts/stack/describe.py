"""What the Compose files say about vidgen: the images they build, and where the system is.

:func:`builds` lists each image docker-compose.yml builds (scripts/images.sh builds them);
:func:`system` tells a test on the host where the running containers answer (host
networking: every address is loopback, names resolved by the services' ``extra_hosts``), in
the shape tests/support/system.py's ``external_system`` reads.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from scripts.stack.compose import Project, environment
from scripts.stack.errors import ComposeError


def builds(project: Project) -> list[dict[str, str]]:
    """Every service with a ``build``: its image, Dockerfile, target, build args, package."""
    found = []
    for name, service in project.services.items():
        build = service.get("build")
        if build is None:
            continue
        args = {str(k): str(v) for k, v in (build.get("args") or {}).items()}
        if "SERVICE" not in args:
            raise ComposeError(f"{name}: build.args must name the SERVICE")
        found.append(
            {
                "name": name,
                "image": str(service["image"]),
                "dockerfile": str(build.get("dockerfile", "Dockerfile")),
                "target": str(build.get("target", "")),
                "args": " ".join(f"{k}={v}" for k, v in args.items()),
                "package": args.get("PACKAGE", f"vidgen-{args['SERVICE']}"),
                "health": args.get("HEALTH_PATH", "/healthz"),
            }
        )
    return found


def members(root: Path) -> list[str]:
    """The workspace members' distribution names (installed from source, not from the lock)."""
    names = []
    for pattern in ("libs/*/pyproject.toml", "services/*/pyproject.toml", "tools/*/pyproject.toml"):
        for path in sorted(root.glob(pattern)):
            names.append(str(tomllib.loads(path.read_text())["project"]["name"]))
    return names


def closure(root: Path, package: str) -> list[str]:
    """The distributions ``package`` may ship: its locked runtime closure (``uv export``)."""
    exported = subprocess.run(
        ["uv", "export", "--frozen", "--quiet", "--no-dev", "--no-hashes", "--no-header",
         "--no-annotate", "--package", package],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    names = []
    for line in exported.splitlines():
        if line.startswith("-e "):
            pyproject = root / line[3:].strip() / "pyproject.toml"
            names.append(str(tomllib.loads(pyproject.read_text())["project"]["name"]))
        elif match := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==", line):
            names.append(match.group(1))
    return names


def _hosts(project: Project) -> dict[str, str]:
    hosts: dict[str, str] = {}
    for service in project.services.values():
        for entry in service.get("extra_hosts", []):
            host, _, address = str(entry).partition(":")
            hosts[host] = address
    return hosts


def _on_host(url: str, hosts: dict[str, str]) -> str:
    """A URL as a container uses it, as the host reaches it (names mapped by extra_hosts)."""
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    host = parts.hostname or ""
    mapped = hosts.get(host, host)
    netloc = parts.netloc.rsplit("@", 1)
    where = netloc[-1].replace(host, mapped, 1)
    netloc_out = f"{netloc[0]}@{where}" if len(netloc) == 2 else where
    if "://" not in url:
        return netloc_out
    return urlunsplit(parts._replace(netloc=netloc_out))


def _host_path(project: Project, service: dict[str, Any], path: str) -> str:
    for spec in service.get("volumes", []):
        source, _, rest = str(spec).partition(":")
        target = rest.split(":", 1)[0]
        if source.startswith((".", "/")) and path.startswith(target.rstrip("/") + "/"):
            return str((project.directory / source).resolve() / path[len(target) :].lstrip("/"))
    raise ComposeError(f"{path} is not on a bind mount the host can read")


def system(project: Project) -> dict[str, Any]:
    """Where the running system answers, for the e2e tests (host networking only)."""
    hosts = _hosts(project)
    gateway = project.service("gateway")
    if gateway.get("network_mode") != "host":
        raise ComposeError("describing the system needs host networking (local-infra.yml)")
    env = environment(gateway)
    ops_ports = {
        name: int(environment(s)["VIDGEN_HTTP_PORT"])
        for name, s in project.services.items()
        if "VIDGEN_HTTP_PORT" in environment(s)
    }
    trace = env.get("VIDGEN_TRACE_FILE")
    runway = environment(project.service("generator")).get("RUNWAYML_BASE_URL", "")
    return {
        "gateway": f"http://127.0.0.1:{env['VIDGEN_HTTP_PORT']}",
        "sim": _on_host(runway, hosts),
        "database_url": _on_host(env["DATABASE_URL"], hosts),
        "kafka_bootstrap": _on_host(env["KAFKA_BOOTSTRAP_SERVERS"], hosts),
        "topic_prefix": env.get("KAFKA_TOPIC_PREFIX", ""),
        "trace_file": _host_path(project, gateway, trace) if trace else None,
        "ops_ports": ops_ports,
        "env": {k: v for k, v in env.items() if k in ("VIDGEN_ENV", "VIDGEN_JWT_SECRET")},
    }
