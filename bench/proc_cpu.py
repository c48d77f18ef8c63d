"""CPU time of processes, from Linux's /proc, for the benchmarks' cost figures; and the pids of
the local infrastructure (``make infra-up``) they measure."""

from __future__ import annotations

import os
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (e.g. PostgreSQL's backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int(_stat(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a server and its children so far, those that have exited included
    (their time is added to the parent's cutime/cstime when it reaps them): PostgreSQL's
    postmaster with every backend, even one that lived for a single pooled connection."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    own_and_reaped = sum(int(f) for f in fields[11:15]) / CLK
    return own_and_reaped + sum(cpu_s(child) for child in children(pid))


def infra_pids() -> dict[str, int]:
    """The local infrastructure's servers that are running, by name (their pid files)."""
    run = Path(os.environ.get("VIDGEN_LOCAL_DIR", ROOT / ".local")) / "run"
    pids = {}
    for name in ("postgres", "tansu", "kafka-store", "nanio"):
        f = run / f"{name}.pid"
        if f.exists():
            pids[name] = int(f.read_text().split()[0])
    return pids
