"""scripts/infra.sh's PostgreSQL starts wherever the stack's directory is.

Run as root, the server runs as user ``postgres``, which cannot enter a directory of mode 700
(what ``mktemp -d`` makes, what a home directory is). A checkout there must still get a
working database: a private stack is put under such a directory, and its PostgreSQL must
start, answer, keep its data across ``down`` and ``start`` like before, and be deleted once
the stack's directory is gone.
"""

from __future__ import annotations

import shutil
import socket
import stat
import tempfile
from pathlib import Path

import psycopg
import pytest

from scripts.infra_stack import InfraStack

pytestmark = pytest.mark.integration


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _connect(stack: InfraStack) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host="127.0.0.1", port=stack.pg_port, user="postgres", dbname="vidgen", autocommit=True
    )


def test_postgres_starts_under_a_private_parent_directory() -> None:
    parent = Path(tempfile.mkdtemp(prefix="vidgen-private-"))
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700
    stack = InfraStack.private(parent / "stack")
    try:
        stack.start("postgres")
        with _connect(stack) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("vidgen",)
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        cluster = (stack.local_dir / "pg").resolve()
        assert (cluster / "PG_VERSION").is_file()
        assert "database system is ready" in stack.log_path("postgres").read_text()

        stack.down()
        assert not _port_open(stack.pg_port)
        stack.start("postgres")
        with _connect(stack) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
    finally:
        stack.down()
        shutil.rmtree(parent, ignore_errors=True)
    stack.down()  # the stack's directory is gone: its cluster is swept
    assert not cluster.exists()
