"""Fixtures of the cross-service suites: the whole system as real processes (tests.support).

One session-scoped ``system`` serves tests/e2e and tests/browser alike (started once, on
first use); ``fast_runway`` resets the simulator to quick tasks around a test. With
``VIDGEN_E2E_SYSTEM`` naming a description of a system already running (the containers of
scripts/compose-e2e.sh), ``system`` is that one instead and nothing is started.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.system import System, external_system, fast_scenario, running_system


@pytest.fixture(scope="session")
def system(request: pytest.FixtureRequest) -> Iterator[System]:
    if described := os.environ.get("VIDGEN_E2E_SYSTEM"):
        running = external_system(Path(described))
        running.set_scenario(fast_scenario())
        yield running
        return
    yield from _local_system(request)


def _local_system(request: pytest.FixtureRequest) -> Iterator[System]:
    database_url: str = request.getfixturevalue("database_url")
    kafka_bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    s3_endpoint: str = request.getfixturevalue("s3_endpoint")
    tmp_path_factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    logs = tmp_path_factory.mktemp("system-logs")
    with running_system(database_url, kafka_bootstrap, s3_endpoint, logs) as running:
        running.set_scenario(fast_scenario())
        yield running


@pytest.fixture
def fast_runway(system: System) -> Iterator[System]:
    """Reset the simulator's scenario to fast tasks around a test that changes it."""
    system.set_scenario(fast_scenario())
    yield system
    system.set_scenario(fast_scenario())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and "system" in getattr(item, "funcargs", {}):
        system: System = item.funcargs["system"]
        report.sections.append(("process logs", system.logs()))
    return report
