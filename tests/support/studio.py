"""The web page as a person uses it, through Playwright: sign in, pick an image, prompt, submit.

Locators go by label and role (as a screen reader would), so the tests also check that every
control is labelled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page, expect

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "docs" / "sample.png"
WAIT_MS = 90_000


@dataclass
class Studio:
    page: Page
    url: str

    def open(self, query: str = "") -> Studio:
        self.page.goto(self.url + "/" + query)
        expect(self.page.get_by_role("heading", name="vidgen studio")).to_be_visible()
        return self

    def sign_in(self, user: str) -> Studio:
        self.page.get_by_label("Sign in as (development)").fill(user)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_text(f"Signed in as {user}")).to_be_visible()
        return self

    def pick_image(self, path: Path = SAMPLE) -> Studio:
        self.page.get_by_label("Image").set_input_files(str(path))
        return self

    def image_ready(self) -> Studio:
        expect(self.page.locator("#image-status")).to_contain_text("ready", timeout=WAIT_MS)
        return self

    def prompt(self, text: str) -> Studio:
        self.page.get_by_label("Prompt").fill(text)
        return self

    def choose(self, model: str | None = None, duration: str | None = None) -> Studio:
        if model:
            self.page.get_by_label("Model").select_option(model)
        if duration:
            self.page.get_by_label("Duration").select_option(duration)
        return self

    @property
    def submit_button(self) -> Locator:
        return self.page.get_by_role("button", name=re.compile("Generate video|Sending"))

    def submit(self) -> Studio:
        self.submit_button.click()
        return self

    @property
    def cards(self) -> Locator:
        return self.page.locator("#grid > li.card")

    def card(self, prompt: str) -> Locator:
        return self.cards.filter(has=self.page.get_by_role("heading", name=prompt, exact=True))

    def wait_status(self, card: Locator, status: str, within_ms: int = WAIT_MS) -> Locator:
        expect(card).to_have_attribute("data-status", status, timeout=within_ms)
        return card

    def generation_id(self, card: Locator) -> str:
        value = card.get_attribute("data-generation-id")
        assert value, "the card has no generation id"
        return value

    def video_state(self, card: Locator) -> dict[str, Any]:
        """duration and readyState of the card's <video>, once it has loaded its data."""
        video = card.locator("video")
        expect(video).to_have_count(1)
        video.evaluate(
            """v => new Promise((resolve, reject) => {
                if (v.readyState >= 2) return resolve(true);
                v.addEventListener('loadeddata', () => resolve(true), {once: true});
                v.addEventListener('error', () => reject(new Error('video error')), {once: true});
                v.load();
            })"""
        )
        state: dict[str, Any] = video.evaluate(
            "v => ({duration: v.duration, readyState: v.readyState, poster: v.poster,"
            " src: v.currentSrc, width: v.videoWidth})"
        )
        return state
