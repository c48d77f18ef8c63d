"""docs/webhooks.md shows the receivers that tests/e2e/test_webhooks.py runs against real
deliveries: each code block of the page's "receiver in ten lines" section is, line for line
and in order, part of its file under docs/examples, so the page cannot drift from what is
tested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def block(language: str) -> list[str]:
    text = (DOCS / "webhooks.md").read_text()
    section = text[text.index("## Verify it") : text.index("**v1a:")]
    found = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert found, f"no {language} block in the receiver section"
    return [line for line in found.group(1).splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("language", "example"), [("python", "receiver.py"), ("js", "receiver.mjs")]
)
def test_the_page_shows_the_tested_receiver(language: str, example: str) -> None:
    lines = [
        line for line in (DOCS / "examples" / example).read_text().splitlines() if line.strip()
    ]
    shown = block(language)
    assert len(shown) >= 10
    at = 0
    for line in shown:
        assert line in lines[at:], f"{example} has no {line!r} (after line {at})"
        at = lines.index(line, at) + 1
