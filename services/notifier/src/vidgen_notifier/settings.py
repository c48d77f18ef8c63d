"""The notifier's settings (environment prefix ``VIDGEN_``).

Besides the common groups (Kafka, database, S3 for presigned links, telemetry) and the token
settings it shares with the gateway (:class:`vidgen_common.auth.JwtSettings`):

- the two keys: ``VIDGEN_WEBHOOK_SECRET_KEY`` encrypts the endpoints' secrets in the
  database (a dump alone does not let anyone sign), ``VIDGEN_WEBHOOK_SIGNING_KEY`` is the
  deployment's Ed25519 key (``whsk_…``) for ``v1a`` signatures. Their defaults are obviously
  fake and refused outside development;
- the address policy (``VIDGEN_WEBHOOK_ALLOWED_TARGETS``), the retry schedule's scale, the
  request timeout, limits, the lifetime of presigned links in payloads;
- the delivery loop: concurrency, lease, idle sleep.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from vidgen_common.auth import JwtSettings
from vidgen_common.errors import ConfigurationError
from vidgen_common.settings import ServiceSettings
from vidgen_common.webhook_targets import AllowList

DEV_SECRET_KEY = "vidgen-dev-webhook-secret-key-not-for-production"  # noqa: S105 (a known fake)
DEV_SIGNING_KEY = "vidgen-dev-webhook-signing-key-not-for-production"


class NotifierSettings(ServiceSettings, JwtSettings):
    """Everything the notifier process reads from its environment."""

    service_name: str = Field(
        "notifier", description="name in logs, traces and event sources; its PostgreSQL schema"
    )
    http_port: int = Field(8004, ge=0, le=65535, description="port of the webhooks API")
    role: Literal["all", "worker", "relay"] = Field(
        "worker",
        description="worker: the notifier emits no events, so it needs no outbox relay",
    )

    webhook_secret_key: SecretStr = Field(
        SecretStr(DEV_SECRET_KEY),
        description="key that encrypts the stored webhook secrets (base64 of 32 random bytes; "
        "the default is refused outside development)",
    )
    webhook_signing_key: SecretStr = Field(
        SecretStr(DEV_SIGNING_KEY),
        description="the deployment's Ed25519 private key for v1a signatures (whsk_ + base64 "
        "of the 32-byte seed; the default is refused outside development)",
    )
    webhook_allowed_targets: str = Field(
        "",
        description="targets admitted although not public: comma-separated hosts, IPs and "
        "CIDRs (development and tests; empty by default)",
    )
    webhook_schedule_scale: float = Field(
        1.0,
        gt=0,
        description="multiplies the retry schedule (1.0: the Standard Webhooks schedule over "
        "about three days; tests use e.g. 0.001)",
    )
    webhook_timeout_s: float = Field(15.0, gt=0, description="bound of one delivery attempt")
    webhook_max_endpoints_per_user: int = Field(
        20, ge=1, description="endpoints one user may register"
    )
    webhook_link_ttl_s: int = Field(
        86_400,
        ge=60,
        le=7 * 86_400,
        description="validity of the presigned video and poster links in a payload",
    )
    webhook_rotate_overlap_s: int = Field(
        86_400,
        ge=0,
        le=7 * 86_400,
        description="default time both the old and the new secret sign after a rotation",
    )
    consumers: int = Field(
        3,
        ge=1,
        le=32,
        description="consumers of the generation events per replica (one group: the "
        "partitions are shared, each generation stays in order); replicas x this at most "
        "KAFKA_PARTITIONS",
    )
    webhook_max_concurrent: int = Field(32, ge=1, description="deliveries in flight per replica")
    webhook_lease_s: float = Field(
        60.0,
        gt=0,
        description="a claimed delivery not finished by then is due again (its replica died); "
        "keep it above the timeout",
    )
    webhook_idle_s: float = Field(1.0, gt=0, description="longest sleep of the delivery loop")
    webhook_page_max: int = Field(100, ge=1, description="largest page of the delivery log")

    @property
    def allowed_targets(self) -> AllowList:
        return AllowList.parse(self.webhook_allowed_targets)

    @property
    def production(self) -> bool:
        return self.env == "production"

    def check_safe(self) -> None:
        """Refuse development keys and secrets outside development."""
        super().check_safe()
        self.check_jwt_safe(self.env)
        if self.env != "development":
            if self.webhook_secret_key.get_secret_value() == DEV_SECRET_KEY:
                raise ConfigurationError(
                    "VIDGEN_WEBHOOK_SECRET_KEY is the development default; set a real one"
                )
            if self.webhook_signing_key.get_secret_value() == DEV_SIGNING_KEY:
                raise ConfigurationError(
                    "VIDGEN_WEBHOOK_SIGNING_KEY is the development default; set a real one"
                )
        if self.webhook_lease_s <= self.webhook_timeout_s:
            raise ConfigurationError("VIDGEN_WEBHOOK_LEASE_S must exceed VIDGEN_WEBHOOK_TIMEOUT_S")
