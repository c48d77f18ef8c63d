"""The gateway's settings (environment variables with the ``VIDGEN_`` prefix).

Besides the common groups (Kafka, database, S3, telemetry) the gateway has:

- authentication: in development a shared HS256 secret (``VIDGEN_JWT_SECRET``, whose default is
  an obviously fake value refused outside development); in production a JWKS URL, an issuer
  and an audience (``VIDGEN_JWT_JWKS_URL``, ``VIDGEN_JWT_ISSUER``, ``VIDGEN_JWT_AUDIENCE``);
- upload limits: bytes and pixel dimensions of prompt images;
- per-user limits: generations in flight and generate requests per window;
- the live stream: keep-alive interval.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from vidgen_common.devtokens import DEV_JWT_SECRET
from vidgen_common.errors import ConfigurationError
from vidgen_common.settings import ServiceSettings

MiB = 1024 * 1024


class GatewaySettings(ServiceSettings):
    """Everything the gateway process reads from its environment."""

    service_name: str = Field(
        "gateway", description="name in logs, traces and event sources; its PostgreSQL schema"
    )
    http_host: str = Field("127.0.0.1", description="address the REST API binds")
    http_port: int = Field(8000, ge=0, le=65535, description="port of the REST API")

    jwt_secret: SecretStr = Field(
        SecretStr(DEV_JWT_SECRET), description="HS256 secret (development and test only)"
    )
    jwt_jwks_url: str | None = Field(
        None, description="JWKS URL; when set, tokens are verified against it (RS256/ES256)"
    )
    jwt_issuer: str | None = Field(None, description="required `iss` (required with JWKS)")
    jwt_audience: str | None = Field(None, description="required `aud` (required with JWKS)")
    jwt_leeway_s: int = Field(30, ge=0, description="clock skew tolerated on exp/nbf/iat")
    jwt_dev_ttl_s: int = Field(
        12 * 3600, ge=60, description="lifetime of development tokens minted by `vidgen token`"
    )

    upload_max_bytes: int = Field(10 * MiB, ge=1024, description="largest accepted image file")
    image_min_side_px: int = Field(
        256, ge=1, description="smallest accepted width and height of a prompt image"
    )
    image_max_side_px: int = Field(
        8000, ge=1, description="largest accepted width and height of a prompt image"
    )

    max_in_flight_per_user: int = Field(
        5, ge=1, description="generations of one user not yet finished; more answer 429"
    )
    generate_rate_limit: int = Field(
        30, ge=1, description="generate requests of one user per rate window; more answer 429"
    )
    generate_rate_window_s: int = Field(
        60, ge=1, description="the window of VIDGEN_GENERATE_RATE_LIMIT, in seconds"
    )
    in_flight_retry_after_s: int = Field(
        15, ge=1, description="Retry-After sent when the in-flight limit is reached"
    )
    idempotency_ttl_s: int = Field(
        24 * 3600, ge=60, description="how long an Idempotency-Key is remembered"
    )

    sse_keepalive_s: float = Field(15.0, gt=0, description="comment sent on an idle stream")
    sse_retry_ms: int = Field(3000, ge=0, description="reconnection delay advised to clients")
    list_page_max: int = Field(100, ge=1, description="largest page of GET /api/videos")

    @property
    def uses_jwks(self) -> bool:
        return self.jwt_jwks_url is not None

    def check_safe(self) -> None:
        """Refuse development secrets outside development, and HS256 in production."""
        super().check_safe()
        dev_secret = self.jwt_secret.get_secret_value() == DEV_JWT_SECRET
        if self.env != "development" and dev_secret and not self.uses_jwks:
            raise ConfigurationError(
                "VIDGEN_JWT_SECRET is the development default; set a real one or a JWKS URL"
            )
        if not self.uses_jwks and len(self.jwt_secret.get_secret_value().encode()) < 32:
            raise ConfigurationError("VIDGEN_JWT_SECRET must be at least 32 bytes (HS256)")
        if self.env == "production" and not (
            self.jwt_jwks_url and self.jwt_issuer and self.jwt_audience
        ):
            raise ConfigurationError(
                "production verifies tokens against a JWKS: set VIDGEN_JWT_JWKS_URL, "
                "VIDGEN_JWT_ISSUER and VIDGEN_JWT_AUDIENCE"
            )
        if self.image_min_side_px > self.image_max_side_px:
            raise ConfigurationError("VIDGEN_IMAGE_MIN_SIDE_PX exceeds VIDGEN_IMAGE_MAX_SIDE_PX")
