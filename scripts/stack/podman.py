"""One Compose service as one podman container: its ``podman run`` and its health check."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.stack.compose import Project, environment
from scripts.stack.errors import ComposeError

LABEL = "io.vidgen.stack.project"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(value: str | int | float | None, default: float) -> float:
    """A Compose duration (``10s``, ``1m30s``, ``500ms``) in seconds."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value)
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
        raise ComposeError(f"not a duration: {value!r}")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def podman_base() -> list[str]:
    """``podman`` and its global options: the OCI runtime (VIDGEN_OCI_RUNTIME, else runc)."""
    runtime = os.environ.get("VIDGEN_OCI_RUNTIME") or ("runc" if shutil.which("runc") else "")
    return ["podman", *(["--runtime", runtime] if runtime else [])]


def container_name(project: Project, service: str) -> str:
    return f"{project.name}-{service}"


def _volume(project: Project, spec: str) -> str:
    source, _, rest = spec.partition(":")
    if not rest:
        raise ComposeError(f"anonymous volume {spec!r} is not supported")
    if source.startswith((".", "/", "~")):
        path = (project.directory / Path(source).expanduser()).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return f"{path}:{rest}"
    if source not in project.volumes:
        raise ComposeError(f"volume {source!r} is not declared in the top-level volumes")
    return f"{project.name}_{source}:{rest}"


def _ulimits(limits: Mapping[str, Any]) -> list[str]:
    args = []
    for name, value in limits.items():
        if isinstance(value, dict):
            args += ["--ulimit", f"{name}={value['soft']}:{value['hard']}"]
        else:
            args += ["--ulimit", f"{name}={value}:{value}"]
    return args


def run_argv(project: Project, name: str) -> list[str]:
    """The ``podman run -d`` of service ``name`` (its health check is run by :func:`probe`)."""
    s = project.service(name)
    host_network = s.get("network_mode") == "host"
    argv = [*podman_base(), "run", "-d", "--name", container_name(project, name)]
    argv += ["--label", f"{LABEL}={project.name}", "--label", f"io.vidgen.stack.service={name}"]
    argv += ["--no-healthcheck"]
    if "network_mode" in s:
        argv += ["--network", str(s["network_mode"])]
    for host in s.get("extra_hosts", []):
        argv += ["--add-host", str(host)]
    if not host_network:
        for port in s.get("ports", []):
            argv += ["-p", str(port)]
    for key, value in environment(s).items():
        argv += ["-e", f"{key}={value}"]
    for spec in s.get("volumes", []):
        argv += ["-v", _volume(project, str(spec))]
    if s.get("read_only"):
        argv += ["--read-only", "--read-only-tmpfs=false"]
    tmpfs = s.get("tmpfs", [])
    for path in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
        argv += ["--tmpfs", str(path)]
    for cap in s.get("cap_drop", []):
        argv += ["--cap-drop", str(cap)]
    for opt in s.get("security_opt", []):
        argv += ["--security-opt", str(opt)]
    argv += _ulimits(s.get("ulimits", {}))
    if s.get("init"):
        argv += ["--init"]
    if "user" in s:
        argv += ["--user", str(s["user"])]
    if "stop_signal" in s:
        argv += ["--stop-signal", str(s["stop_signal"])]
    argv += ["--stop-timeout", str(int(seconds(s.get("stop_grace_period"), 10)))]
    if s.get("pull_policy") == "never":
        argv += ["--pull", "never"]
    restart = str(s.get("restart", "no"))
    if restart != "no":
        argv += ["--restart", restart]
    entrypoint = s.get("entrypoint")
    if entrypoint is not None:
        argv += [
            "--entrypoint",
            json.dumps(entrypoint) if isinstance(entrypoint, list) else entrypoint,
        ]
    if "image" not in s:
        raise ComposeError(f"{name}: no image (build it first; this runner does not build)")
    argv.append(str(s["image"]))
    command = s.get("command")
    if command is not None:
        argv += [str(c) for c in command] if isinstance(command, list) else shlex.split(command)
    return argv


@dataclass(frozen=True)
class HealthCheck:
    """What proves a container healthy, and how long it may take (Compose's fields)."""

    argv: list[str]
    interval_s: float
    timeout_s: float
    retries: int
    start_period_s: float

    @property
    def deadline_s(self) -> float:
        """How long after the start it may take: its start period plus every retry."""
        return self.start_period_s + self.retries * (self.interval_s + self.timeout_s)


def _test_argv(test: Any) -> list[str] | None:
    if isinstance(test, str):
        return ["sh", "-c", test]
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return [str(t) for t in test[1:]]
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", " ".join(str(t) for t in test[1:])]
    raise ComposeError(f"healthcheck test {test!r}")


def health_check(
    project: Project, name: str, image_check: dict[str, Any] | None
) -> HealthCheck | None:
    """The service's health check: Compose's ``healthcheck``, else the image's HEALTHCHECK."""
    check = project.service(name).get("healthcheck")
    if check is not None:
        if check.get("disable"):
            return None
        argv = _test_argv(check.get("test"))
        fields = check
    elif image_check and image_check.get("Test"):
        argv = _test_argv(image_check["Test"])
        ns = 1e-9
        fields = {
            "interval": image_check.get("Interval", 30e9) * ns,
            "timeout": image_check.get("Timeout", 30e9) * ns,
            "retries": image_check.get("Retries", 3),
            "start_period": image_check.get("StartPeriod", 0) * ns,
        }
    else:
        return None
    if argv is None:
        return None
    return HealthCheck(
        argv=argv,
        interval_s=seconds(fields.get("interval"), 30),
        timeout_s=seconds(fields.get("timeout"), 30),
        retries=int(fields.get("retries", 3)),
        start_period_s=seconds(fields.get("start_period"), 0),
    )


def probe(container: str, check: HealthCheck) -> bool:
    """Run the health check in the container once: did it pass within its timeout?"""
    try:
        result = subprocess.run(
            [*podman_base(), "exec", container, *check.argv],
            capture_output=True,
            timeout=check.timeout_s + 5,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0
