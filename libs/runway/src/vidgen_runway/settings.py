"""How to reach Runway: :class:`RunwaySettings` (needs the ``sdk`` extra, not the SDK itself).

It reads ``RUNWAYML_API_SECRET`` and ``RUNWAYML_BASE_URL`` (the SDK's own variable names).
Without a secret the services talk to the Runway simulator (``http://127.0.0.1:8100`` unless
``RUNWAYML_BASE_URL`` says otherwise) with the simulator's development key; in production a
missing secret is refused by :meth:`RunwaySettings.check_safe`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from vidgen_common.errors import ConfigurationError

SIMULATOR_BASE_URL = "http://127.0.0.1:8100"
# The simulator's development key: the default of `api_keys` in tools/runway_sim's settings
# (copied, not imported: production code never imports the simulator; a test keeps them equal).
SIMULATOR_DEV_KEY = "key_simulator_dev_only_0000000000000000"


class RunwaySettings(BaseSettings):
    """How to reach Runway (or the simulator). Environment names are the SDK's own."""

    model_config = SettingsConfigDict(extra="ignore")

    runwayml_api_secret: SecretStr | None = Field(
        None, description="Runway API key; without it the simulator is used"
    )
    runwayml_base_url: str | None = Field(
        None, description="API base URL (default: Runway's, or the local simulator without a key)"
    )
    runway_timeout_s: float = Field(
        30.0, gt=0, description="Timeout of one Runway call (bounds the create's unknown window)"
    )
    runway_connect_timeout_s: float = Field(5.0, gt=0, description="TCP connect timeout")

    @property
    def uses_simulator(self) -> bool:
        return self.runwayml_api_secret is None

    @property
    def api_key(self) -> str:
        if self.runwayml_api_secret is None:
            return SIMULATOR_DEV_KEY
        return self.runwayml_api_secret.get_secret_value()

    @property
    def base_url(self) -> str | None:
        """The base URL to use; None leaves the SDK's default (Runway's API)."""
        if self.runwayml_base_url:
            return self.runwayml_base_url
        return SIMULATOR_BASE_URL if self.uses_simulator else None

    def check_safe(self, env: str) -> None:
        """Refuse to run production against the simulator."""
        if env == "production" and self.uses_simulator:
            raise ConfigurationError("RUNWAYML_API_SECRET is not set; production needs a real key")
