"""Each SDK error class, raised by the SDK for the matching simulator answer."""

from __future__ import annotations

import httpx
import pytest
import runwayml
from runwayml import AsyncRunwayML, RunwayML

from runway_sim.testing import SimHandle
from runway_sim.testkit import data_uri


def test_unknown_model_is_bad_request(client: RunwayML, image_uri: str) -> None:
    with pytest.raises(runwayml.BadRequestError) as err:
        client.image_to_video.create(
            model="gen3a_turbo",
            prompt_image=image_uri,
            ratio="1280:720",
        )
    assert err.value.status_code == 400
    body = err.value.body
    assert isinstance(body, dict)
    assert body["error"] == "Validation of body failed"
    assert body["issues"][0]["path"] == ["model"]


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"ratio": "1920:1080"}, ["ratio"]),  # a veo ratio, not gen4_turbo's
        ({"duration": 11}, ["duration"]),
        ({"prompt_text": "x" * 1001}, ["promptText"]),
        ({"prompt_image": "data:image/png;base64,???"}, ["promptImage"]),
        ({"prompt_image": "data:application/pdf;base64,AAAA"}, ["promptImage"]),
        ({"prompt_image": "ftp://example.com/a.png"}, ["promptImage"]),
        ({"prompt_image": "runway://no-such-upload"}, ["promptImage"]),
        (
            {"prompt_image": [{"uri": "https://example.com/a.png", "position": "last"}]},
            ["promptImage", 0, "position"],
        ),
        ({"seed": -1}, ["seed"]),
    ],
)
def test_invalid_parameters_are_bad_requests(
    client: RunwayML, image_uri: str, overrides: dict[str, object], path: list[object]
) -> None:
    params: dict[str, object] = {
        "model": "gen4_turbo",
        "prompt_image": image_uri,
        "ratio": "1280:720",
        "duration": 5,
    }
    params.update(overrides)
    with pytest.raises(runwayml.BadRequestError) as err:
        client.image_to_video.create(**params)
    body = err.value.body
    assert isinstance(body, dict)
    assert [issue["path"] for issue in body["issues"]] == [path]


def test_prompt_text_limit_counts_utf16_code_units(client: RunwayML, image_uri: str) -> None:
    emoji = "\N{GRINNING FACE}"  # two UTF-16 code units
    ok = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720", prompt_text=emoji * 500
    )
    assert ok.id
    with pytest.raises(runwayml.BadRequestError):
        client.image_to_video.create(
            model="gen4_turbo",
            prompt_image=image_uri,
            ratio="1280:720",
            prompt_text=emoji * 500 + "x",
        )


def test_gen45_requires_prompt_text_and_duration(client: RunwayML, image_uri: str) -> None:
    with pytest.raises(runwayml.BadRequestError) as err:
        client.image_to_video.create(model="gen4.5", prompt_image=image_uri, ratio="1280:720")
    body = err.value.body
    assert isinstance(body, dict)
    assert sorted(issue["path"][0] for issue in body["issues"]) == ["duration", "promptText"]


def test_bad_api_key_is_authentication_error(sim: SimHandle, image_uri: str) -> None:
    with RunwayML(base_url=sim.base_url, api_key="key_not_a_real_key") as bad:
        with pytest.raises(runwayml.AuthenticationError) as err:
            bad.tasks.retrieve("00000000-0000-0000-0000-000000000000")
        with pytest.raises(runwayml.AuthenticationError):
            bad.organization.retrieve()
    assert err.value.status_code == 401
    assert isinstance(err.value.body, dict)
    assert "error" in err.value.body


def test_missing_or_wrong_version_header_is_bad_request(sim: SimHandle) -> None:
    with (
        RunwayML(base_url=sim.base_url, api_key=sim.api_key, runway_version="2023-01-01") as old,
        pytest.raises(runwayml.BadRequestError) as err,
    ):
        old.organization.retrieve()
    assert "2024-11-06" in str(err.value)
    response = httpx.get(
        f"{sim.base_url}/v1/organization", headers={"Authorization": f"Bearer {sim.api_key}"}
    )
    assert response.status_code == 400
    assert "X-Runway-Version" in response.json()["error"]


async def test_unknown_task_is_not_found(aclient: AsyncRunwayML) -> None:
    with pytest.raises(runwayml.NotFoundError):
        await aclient.tasks.retrieve("4b1a0ad0-1f7a-4c56-9d36-5bd3a1c1c9a1")
    with pytest.raises(runwayml.NotFoundError):
        await aclient.tasks.delete("4b1a0ad0-1f7a-4c56-9d36-5bd3a1c1c9a1")


def test_rate_limit_after_sdk_retries(sim: SimHandle, client: RunwayML, image_uri: str) -> None:
    sim.set_scenario({"rate_limit": {"rate": 1.0, "retry_after_s": 0.05}})
    with pytest.raises(runwayml.RateLimitError) as err:
        client.image_to_video.create(model="gen4_turbo", prompt_image=image_uri, ratio="1280:720")
    assert err.value.response.headers["retry-after-ms"] == "50"
    counters = sim.counters()
    assert counters["calls"]["create"] == {"429": 3}  # first try + the SDK's 2 retries
    assert counters["creates_accepted"] == 0


def test_rate_limit_next_n_is_absorbed_by_sdk_retries(
    sim: SimHandle, client: RunwayML, image_uri: str
) -> None:
    sim.set_scenario({"rate_limit": {"next_n": 2, "retry_after_s": 0.01}})
    task = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
    )
    assert task.id
    assert sim.counters()["calls"]["create"] == {"429": 2, "200": 1}
    assert sim.scenario()["rate_limit"]["next_n"] == 0


def test_daily_generation_cap(sim: SimHandle, image_uri: str) -> None:
    sim.set_scenario({"org": {"models": {"gen4_turbo": {"max_daily": 2}}}})
    with RunwayML(base_url=sim.base_url, api_key=sim.api_key, max_retries=0) as client:
        for _ in range(2):
            client.image_to_video.create(
                model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
            )
        with pytest.raises(runwayml.RateLimitError) as err:
            client.image_to_video.create(
                model="gen4_turbo", prompt_image=image_uri, ratio="1280:720"
            )
        assert "daily" in str(err.value)
        # other models keep their own cap
        client.image_to_video.create(model="veo3.1_fast", prompt_image=image_uri, ratio="1280:720")
        org = client.organization.retrieve()
    assert org.tier.models["gen4_turbo"].max_daily_generations == 2
    assert org.usage.models["gen4_turbo"].daily_generations == 2


def test_server_error_burst(sim: SimHandle, client: RunwayML) -> None:
    sim.set_scenario({"server_errors": {"next_n": 3, "status": 502, "endpoints": ["organization"]}})
    with pytest.raises(runwayml.InternalServerError) as err:
        client.organization.retrieve()
    assert err.value.status_code == 502
    sim.set_scenario({"server_errors": {"next_n": 2, "status": 503}})
    org = client.organization.retrieve()  # two 503s, then the SDK's second retry succeeds
    assert org.credit_balance > 0
    assert sim.counters()["calls"]["organization"] == {"502": 3, "503": 2, "200": 1}


def test_not_enough_credits(sim: SimHandle, client: RunwayML, image_uri: str) -> None:
    sim.set_scenario({"org": {"credit_balance": 20}})
    client.image_to_video.create(  # 4 s x 5 credits
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720", duration=4
    )
    with pytest.raises(runwayml.BadRequestError) as err:
        client.image_to_video.create(
            model="gen4_turbo", prompt_image=image_uri, ratio="1280:720", duration=2
        )
    assert "credits" in str(err.value)
    assert client.organization.retrieve().credit_balance == 0


def test_large_data_uri_is_rejected(client: RunwayML) -> None:
    huge = data_uri(b"\x89PNG" + bytes(4 * 1024 * 1024))  # base64 makes it > 5 MB
    with pytest.raises(runwayml.BadRequestError) as err:
        client.image_to_video.create(model="gen4_turbo", prompt_image=huge, ratio="1280:720")
    assert "5MB" in str(err.value)
