"""The chaos run's own infrastructure: a broker, S3 server and PostgreSQL of its own.

:class:`PrivateStack` is ``scripts/infra_stack.py``'s :class:`InfraStack` on free ports in a
private directory (so the run can restart its parts without disturbing anything else), with
the broker on persistent storage. The broker keeps its data in an object store of its own
(``kafka-store``), apart from the services' S3 server, as in production where Kafka has its
own disks: an S3 outage injected by the run hits the services, not the broker.

``restart(part)``, ``stop(part)`` and ``start(part)`` (part: ``kafka``, ``s3``, ``postgres``)
run ``infra.sh``'s sub-commands: a PostgreSQL restart is ``pg_ctl restart -m immediate``, every
stop waits until the port is closed (a stopped broker can linger as a zombie, so its pid says
nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from pathlib import Path
from typing import cast, get_args

from scripts.infra_stack import InfraError, InfraStack, Part

ROOT = Path(__file__).resolve().parents[3]
PARTS: tuple[str, ...] = get_args(Part)

__all__ = ["ROOT", "InfraError", "PrivateStack", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateStack:
    """A private stack under ``root``; every command's output goes to ``log``."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self._log = log
        self._stack = InfraStack.private(root / "infra", storage="s3")
        self._lock = asyncio.Lock()

    def _run(self, *args: str, timeout: float = 180) -> None:
        with self._log.open("a") as out:
            out.write(f"\n$ infra.sh {' '.join(args)}\n")
            try:
                out.write(self._stack.run(*args, timeout=timeout))
            except InfraError as exc:
                out.write(str(exc))
                raise

    def up(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._run("up", timeout=300)

    def down(self) -> None:
        """Stop everything (bounded), even what a fault left half-stopped."""
        with contextlib.suppress(InfraError):
            self._run("down", timeout=120)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """The services' addresses, as ``infra.sh up`` wrote them."""
        env: dict[str, str] = {}
        for line in (self._stack.local_dir / "infra.env").read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key] = value
        return env

    def logs(self) -> dict[str, Path]:
        """The infrastructure's own logs worth keeping (name → path)."""
        names = ("tansu", "kafka-store", "nanio", "postgres")
        return {f"{n}.log": self._stack.log_path(n) for n in names}

    @staticmethod
    def _part(part: str) -> Part:
        if part not in PARTS:
            raise ValueError(f"no part {part!r} (one of {', '.join(PARTS)})")
        return cast(Part, part)

    async def restart(self, part: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._run, "restart", self._part(part))

    async def stop(self, part: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._run, "stop", self._part(part))

    async def start(self, part: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._run, "start", self._part(part))
