"""Process-level settings (environment prefix `RUNWAY_SIM_`).

Runtime behaviour lives in `Scenario` (`settings.scenario` is only its starting point); these
are the things fixed for the life of the process: keys, rendering, limits on inputs.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runway_sim.scenario import Scenario

DEFAULT_API_KEY = "key_simulator_dev_only_0000000000000000"
RUNWAY_API_VERSION = "2024-11-06"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RUNWAY_SIM_", env_nested_delimiter="__", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = 8100
    api_keys: str = Field(
        default=DEFAULT_API_KEY, description="Accepted API keys, comma-separated."
    )
    api_version: str = RUNWAY_API_VERSION
    public_base_url: str | None = Field(
        default=None,
        description="Base of the upload and output URLs handed out; default: the request's.",
    )
    signing_secret: str = Field(default_factory=lambda: secrets.token_hex(32))
    render_height: int = Field(default=240, ge=16, le=2160)
    render_fps: int = Field(default=24, ge=1, le=60)
    render_workers: int = Field(default=2, ge=1)
    render_executor: Literal["thread", "process"] = "thread"
    render_cache_size: int = Field(default=128, ge=1)
    fetch_timeout_s: float = Field(default=10.0, gt=0)
    max_data_uri_bytes: int = 5 * 1024 * 1024
    max_asset_bytes: int = 16 * 1024 * 1024
    allow_http_urls: bool = Field(
        default=True, description="Runway only fetches https URLs; http helps local testing."
    )
    upload_ttl_s: float = Field(default=24 * 3600, gt=0)
    access_log: bool = True
    log_level: str = "info"
    scenario: Scenario = Field(default_factory=Scenario)
    scenario_file: Path | None = Field(
        default=None, description="JSON file merged over `scenario` at startup."
    )

    @property
    def accepted_keys(self) -> frozenset[str]:
        return frozenset(key.strip() for key in self.api_keys.split(",") if key.strip())

    @property
    def first_key(self) -> str:
        return next(key.strip() for key in self.api_keys.split(",") if key.strip())
