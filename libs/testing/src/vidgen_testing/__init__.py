"""vidgen's test support: a dev dependency only, never installed with a service.

The pytest plugin (:mod:`vidgen_testing.plugin`: fixtures for real PostgreSQL, Kafka and S3)
is loaded by the root conftest; tests import the helpers from here:

- :func:`unique`, :func:`wait_until`, :class:`MemorySink` (:mod:`vidgen_testing.helpers`);
- :class:`PrivateTansu`, :class:`PrivatePostgres`, :func:`free_port`
  (:mod:`vidgen_testing.servers`): servers of a test's own, to restart, stop or pause.
"""

from vidgen_testing.helpers import MemorySink, unique, wait_until
from vidgen_testing.servers import (
    PrivatePostgres,
    PrivateTansu,
    find_pg_bindir,
    find_tansu,
    free_port,
)

__all__ = [
    "MemorySink",
    "PrivatePostgres",
    "PrivateTansu",
    "find_pg_bindir",
    "find_tansu",
    "free_port",
    "unique",
    "wait_until",
]
