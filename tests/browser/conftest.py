"""Browser tests: the built web page, served by the gateway of the whole running system,
driven in headless Chromium. Each test gets fresh browser contexts (no shared storage) and
leaves a screenshot of every page it opened in .local/screenshots/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.support.browser import CHROMIUM_ARGS, chromium_path
from tests.support.studio import Studio
from tests.support.system import ROOT, System

SCREENSHOTS = ROOT / ".local" / "screenshots"
INDEX = ROOT / "web" / "dist" / "index.html"


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    path = chromium_path()
    if path is None:
        _unavailable("Chromium is not installed (apt-get install -y chromium)")
    assert path is not None
    browser = playwright.chromium.launch(
        executable_path=str(path), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def site(system: System) -> str:
    """The gateway's address, once it serves the built page."""
    if not INDEX.exists():
        _unavailable("the web page is not built: run `make web`")
    return system.gateway


@pytest.fixture
def open_page(
    browser: Browser, site: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Page]]:
    """``open_page(viewport=...)``: a page in a fresh context; screenshotted at the end."""
    pages: list[Page] = []
    contexts = []

    def new(**options: object) -> Page:
        context = browser.new_context(**options)  # type: ignore[arg-type]
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        return page

    yield new
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    for i, page in enumerate(pages):
        suffix = f"-{i + 1}" if len(pages) > 1 else ""
        try:
            page.screenshot(path=str(SCREENSHOTS / f"{name}{suffix}.png"), full_page=True)
        except Exception as exc:  # a screenshot must not hide the test's own result
            print(f"no screenshot of {name}{suffix}: {exc!r}")
    for context in contexts:
        context.close()


@pytest.fixture
def studio(open_page: Callable[..., Page], site: str) -> Callable[..., Studio]:
    """``studio(user)``: the page, opened and signed in as ``user`` (a fresh context)."""

    def make(user: str, query: str = "", **options: object) -> Studio:
        page = open_page(**options)
        return Studio(page, site).open(query).sign_in(user)

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
