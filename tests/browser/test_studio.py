"""vidgen studio in headless Chromium, against the whole system: what a newcomer does."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.support.studio import Studio
from tests.support.system import QUEUED_MODEL, System
from vidgen_runway.verdicts import MODERATION_USER_MESSAGE

StudioFactory = Callable[..., Studio]
SLOW = {"durations": {"gen4_turbo": {"median_s": 60, "sigma": 0, "min_s": 0}}}


def user(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def first_paint(page: Page) -> dict[str, float]:
    entries: list[dict[str, Any]] = page.evaluate(
        "performance.getEntriesByType('paint').map(e => ({name: e.name, t: e.startTime}))"
    )
    return {e["name"]: float(e["t"]) for e in entries}


def test_a_newcomer_makes_a_video(
    system: System, fast_runway: System, studio: StudioFactory
) -> None:
    s = studio(user("alice"), viewport={"width": 1280, "height": 900})
    paint = first_paint(s.page)
    print(
        f"first paint {paint.get('first-paint', -1):.0f} ms, "
        f"first contentful paint {paint.get('first-contentful-paint', -1):.0f} ms"
    )
    s.pick_image()
    expect(s.page.get_by_alt_text("Preview of the chosen image")).to_be_visible()
    s.image_ready()
    s.prompt("a slow pan over misty hills")
    expect(s.page.locator("#prompt-count")).to_have_text("27 / 1000 characters")
    s.choose(model="gen4_turbo", duration="5")
    expect(s.page.locator("#estimate")).to_contain_text("25 credits")
    s.submit()

    card = s.card("a slow pan over misty hills")
    expect(card).to_have_count(1)
    s.wait_status(card, "completed")
    expect(card.get_by_role("status")).to_have_text("Completed")
    expect(card.locator("dd[data-detail=costCredits]")).to_contain_text("credits")
    expect(card.locator("dd[data-detail=elapsed]")).to_contain_text("s")
    video = s.video_state(card)
    assert video["duration"] > 0, video
    assert video["readyState"] >= 2, video
    assert video["width"] > 0, video
    assert video["poster"].startswith("http"), video
    download = card.get_by_role("link", name="Download: a slow pan over misty hills")
    href = download.get_attribute("href")
    assert href == video["src"]
    stored = httpx.get(href, timeout=30)
    assert stored.status_code == 200
    assert stored.content[4:8] == b"ftyp"  # an MP4


def test_a_double_click_makes_one_generation(
    system: System, fast_runway: System, studio: StudioFactory
) -> None:
    name = user("dora")
    s = studio(name)
    s.pick_image().image_ready().prompt("one video, not two")
    before = system.counters()["creates_accepted"]
    s.submit_button.dblclick()
    card = s.card("one video, not two")
    s.wait_status(card, "completed")
    with system.client(name) as client:
        items = client.get("/api/videos").json()["items"]
    assert [i["prompt"] for i in items] == ["one video, not two"]
    assert system.counters()["creates_accepted"] - before == 1
    expect(s.cards).to_have_count(1)


def test_a_refused_prompt_shows_the_user_facing_message(
    system: System, fast_runway: System, studio: StudioFactory
) -> None:
    system.set_scenario({"moderation_words": ["forbiddenword"]})
    s = studio(user("erin"))
    s.pick_image().image_ready().prompt("a forbiddenword scene").submit()
    card = s.wait_status(s.card("a forbiddenword scene"), "failed")
    expect(card.get_by_role("status")).to_have_text("Failed")
    expect(card.locator(".message")).to_have_text(MODERATION_USER_MESSAGE)
    expect(card.locator("video")).to_have_count(0)
    expect(card.get_by_role("button", name="Cancel: a forbiddenword scene")).to_have_count(0)


def test_cancel_from_the_card(system: System, fast_runway: System, studio: StudioFactory) -> None:
    system.set_scenario(SLOW)
    s = studio(user("carol"))
    s.pick_image().image_ready().prompt("a long slow sunrise").submit()
    card = s.wait_status(s.card("a long slow sunrise"), "generating")
    card.get_by_role("button", name="Cancel: a long slow sunrise").click()
    s.wait_status(card, "cancelled")
    expect(card.get_by_role("status")).to_have_text("Cancelled")
    expect(card.locator(".message")).not_to_be_empty()
    expect(card.get_by_role("button", name="Cancel: a long slow sunrise")).to_have_count(0)


def test_a_second_user_sees_none_of_the_first_users_cards(
    system: System, fast_runway: System, studio: StudioFactory
) -> None:
    first = studio(user("frank"))
    first.pick_image().image_ready().prompt("frank's own video").submit()
    card = first.wait_status(first.card("frank's own video"), "completed")
    generation_id = first.generation_id(card)

    second = studio(user("grace"))
    expect(second.page.locator("#videos-empty")).to_be_visible()
    expect(second.cards).to_have_count(0)
    answer = second.page.evaluate(
        """async id => {
            const token = localStorage.getItem('vidgen.devToken');
            const r = await fetch('/api/videos/status/' + id,
                                  {headers: {Authorization: 'Bearer ' + token}});
            return r.status;
        }""",
        generation_id,
    )
    assert answer == 404
    first.page.reload()
    expect(first.card("frank's own video")).to_have_count(1)


def test_the_live_card_resumes_after_the_gateway_restarts(
    system: System, fast_runway: System, studio: StudioFactory
) -> None:
    system.set_scenario({"durations": {"gen4_turbo": {"median_s": 12, "sigma": 0, "min_s": 0}}})
    s = studio(user("heidi"))
    s.page.evaluate("window.__samePage = true")
    s.pick_image().image_ready().prompt("through a restart").submit()
    card = s.wait_status(s.card("through a restart"), "generating")
    expect(card).to_have_attribute("data-stream", "live")

    system.stop("gateway")
    expect(card).to_have_attribute("data-stream", "reconnecting", timeout=30_000)
    expect(card.get_by_role("status")).to_contain_text("reconnecting")
    system.start("gateway")

    s.wait_status(card, "completed")
    assert s.page.evaluate("window.__samePage") is True  # resumed, not reloaded
    video = s.video_state(card)
    assert video["duration"] > 0


def test_a_waiting_card_shows_its_place_and_when_it_should_be_ready(
    system: System, fast_runway: System, studio: StudioFactory
) -> None:
    # QUEUED_MODEL has one Runway slot in the system under test: a long task takes it
    system.set_scenario({"durations": {QUEUED_MODEL: {"median_s": 60, "sigma": 0, "min_s": 0}}})
    s = studio(user("gina"))
    s.pick_image().image_ready().prompt("the one slot taken").choose(model=QUEUED_MODEL)
    s.submit()
    first = s.wait_status(s.card("the one slot taken"), "generating")
    s.prompt("waiting for the slot").submit()
    second = s.card("waiting for the slot")
    expect(second).to_have_attribute("data-status", "queued")
    expect(second.locator("dd[data-detail=queuePosition]")).to_have_text(
        "#1, waiting for a free slot"
    )
    expect(second.locator("dd[data-detail=estimatedStartAt]")).to_contain_text("≈")
    expect(second.locator("dd[data-detail=estimatedCompletionAt]")).to_contain_text("9 in 10 by")
    expect(first.locator("dd[data-detail=queuePosition]")).to_have_count(0)
    for prompt, card in (("waiting for the slot", second), ("the one slot taken", first)):
        card.get_by_role("button", name=f"Cancel: {prompt}").click()
        s.wait_status(card, "cancelled")
