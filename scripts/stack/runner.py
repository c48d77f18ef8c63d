"""Bring a Compose project up and down with podman, gated on health like Compose."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from scripts.stack.compose import Project, dependencies
from scripts.stack.errors import StackError, UnhealthyError
from scripts.stack.podman import (
    LABEL,
    HealthCheck,
    container_name,
    health_check,
    podman_base,
    probe,
    run_argv,
)

POLL_S = 1.0


def say(text: str) -> None:
    print(f"[stack] {text}", file=sys.stderr, flush=True)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*podman_base(), *args], capture_output=True, text=True, check=check, timeout=300
    )


def inspect(container: str) -> dict[str, Any] | None:
    result = podman("container", "inspect", container, check=False)
    if result.returncode != 0:
        return None
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found[0] if found else None


def image_health(image: str) -> dict[str, Any] | None:
    result = podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image)
    value: dict[str, Any] | None = json.loads(result.stdout or "null")
    return value


def logs(container: str, lines: int = 60) -> str:
    result = podman("logs", "--tail", str(lines), container, check=False)
    return (result.stdout + result.stderr).strip()


class Stack:
    """The containers of one project: started in order, each start gated on its dependencies."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._checks: dict[str, HealthCheck | None] = {}
        self._started: dict[str, float] = {}
        self._healthy: set[str] = set()

    def check_of(self, name: str) -> HealthCheck | None:
        if name not in self._checks:
            image = str(self.project.service(name).get("image", ""))
            self._checks[name] = health_check(self.project, name, image_health(image))
        return self._checks[name]

    def up(self, services: list[str] | None = None) -> None:
        wanted = self._with_dependencies(services or list(self.project.services))
        for name in self.project.order():
            if name not in wanted:
                continue
            for target, condition in dependencies(self.project, name).items():
                self.wait(target, condition)
            self.start(name)
        for name in self.project.order():
            if name in wanted:
                self.wait(name, "service_healthy")

    def _with_dependencies(self, names: list[str]) -> set[str]:
        found: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in found:
                found.add(name)
                todo += list(dependencies(self.project, name))
        return found

    def start(self, name: str) -> None:
        container = container_name(self.project, name)
        podman("rm", "-f", container, check=False)
        result = podman(*run_argv(self.project, name)[len(podman_base()) :], check=False)
        if result.returncode != 0:
            raise StackError(f"{name} did not start: {result.stderr.strip()}")
        self._started[name] = time.monotonic()
        say(f"started {container}")

    def wait(self, name: str, condition: str) -> None:
        """Wait until ``name`` meets a ``depends_on`` condition, or raise with its log."""
        container = container_name(self.project, name)
        if condition == "service_completed_successfully":
            result = podman("wait", container)
            code = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "?"
            if code != "0":
                raise UnhealthyError(f"{name} exited with {code}:\n{logs(container)}")
            return
        check = self.check_of(name)
        if condition == "service_started" or check is None or name in self._healthy:
            return
        started = self._started.get(name, time.monotonic())
        while True:
            state = inspect(container)
            if state is None:
                raise UnhealthyError(f"{name} is gone")
            if state["State"].get("Status") == "exited" and not self._restarts(name):
                code = state["State"].get("ExitCode")
                raise UnhealthyError(f"{name} exited with {code}:\n{logs(container)}")
            if state["State"].get("Running") and probe(container, check):
                self._healthy.add(name)
                say(f"{container} is healthy ({time.monotonic() - started:.0f} s)")
                return
            if time.monotonic() - started > check.deadline_s:
                raise UnhealthyError(
                    f"{name} not healthy after {check.deadline_s:.0f} s:\n{logs(container)}"
                )
            time.sleep(POLL_S)

    def _restarts(self, name: str) -> bool:
        return str(self.project.service(name).get("restart", "no")) in ("always", "unless-stopped")

    def down(self, volumes: bool = False) -> None:
        """Stop and remove every container of the project (its volumes too when asked)."""
        listed = podman("ps", "-a", "--filter", f"label={LABEL}={self.project.name}",
                        "--format", "{{.Names}}")  # fmt: skip
        names = listed.stdout.split()
        for container in reversed(names):
            podman("rm", "-f", "-t", "60", container, check=False)
            say(f"removed {container}")
        if volumes:
            for volume in sorted(self.project.volumes):
                podman("volume", "rm", "-f", f"{self.project.name}_{volume}", check=False)

    def status(self) -> list[tuple[str, str]]:
        rows = []
        for name in self.project.order():
            state = inspect(container_name(self.project, name))
            rows.append((name, state["State"]["Status"] if state else "absent"))
        return rows
