"""The gateway's settings (environment variables with the ``VIDGEN_`` prefix).

Besides the common groups (Kafka, database, S3, telemetry) the gateway has:

- authentication: in development a shared HS256 secret (``VIDGEN_JWT_SECRET``, whose default is
  an obviously fake value refused outside development); in production a JWKS URL, an issuer
  and an audience (``VIDGEN_JWT_JWKS_URL``, ``VIDGEN_JWT_ISSUER``, ``VIDGEN_JWT_AUDIENCE``);
- upload limits: bytes and pixel dimensions of prompt images;
- per-user limits: generations in flight and generate requests per window;
- the credit ledger: default daily and monthly budgets in credits (unset: unlimited; an
  administrator overrides them per user) and the JWT claim and role that make an administrator;
- the live stream: keep-alive interval;
- the web page (``web/``, served at ``/``), CORS and the development sign-in.
- the notifier (``VIDGEN_NOTIFIER_URL``) it forwards ``/api/webhooks*`` to;
- the whole pipeline's bound, beyond which a generation not finished counts as stalled.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from vidgen_common.auth import JwtSettings
from vidgen_common.devtokens import DEV_JWT_SECRET as DEV_JWT_SECRET
from vidgen_common.errors import ConfigurationError
from vidgen_common.fairshare import FairShareSettings
from vidgen_common.settings import ServiceSettings

MiB = 1024 * 1024
# The Vite dev server's origins (`npm run dev` in web/), allowed by CORS outside production.
DEV_SERVER_ORIGINS = ("http://localhost:5173", "http://127.0.0.1:5173")


class GatewaySettings(ServiceSettings, JwtSettings, FairShareSettings):
    """Everything the gateway process reads from its environment."""

    service_name: str = Field(
        "gateway", description="name in logs, traces and event sources; its PostgreSQL schema"
    )
    http_host: str = Field("127.0.0.1", description="address the REST API binds")
    http_port: int = Field(8000, ge=0, le=65535, description="port of the REST API")

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

    budget_daily_credits: int | None = Field(
        None,
        ge=0,
        description="default budget of one user per UTC day, in Runway credits (estimates "
        "reserved at admission, settled to the real cost); unset: unlimited",
    )
    budget_monthly_credits: int | None = Field(
        None,
        ge=0,
        description="default budget of one user per UTC month, in Runway credits; unset: unlimited",
    )
    admin_role: str = Field(
        "admin",
        min_length=1,
        description="role (in VIDGEN_JWT_ROLES_CLAIM) that may call /api/admin (budgets, usage)",
    )

    sse_keepalive_s: float = Field(15.0, gt=0, description="comment sent on an idle stream")
    sse_retry_ms: int = Field(3000, ge=0, description="reconnection delay advised to clients")
    list_page_max: int = Field(100, ge=1, description="largest page of GET /api/videos")
    queue_refresh_s: float = Field(
        2.0, gt=0, description="how often a live stream re-reads a waiting generation's place"
    )
    eta_prior_s_per_video_s: float = Field(
        12.0,
        gt=0,
        description="Runway task seconds per second of video assumed until a model and "
        "duration has finished tasks to learn from",
    )
    eta_history: int = Field(
        200, ge=1, description="recent finished tasks per model and duration the estimates use"
    )
    eta_refill_s: float = Field(
        0.4,
        ge=0,
        description="time from a task's end being seen to the next task taking its slot, "
        "assumed until the model's submissions have shown it (bench/slots.py prints it by "
        "stage)",
    )

    web_enabled: bool = Field(True, description="serve the web page (web/) at /")
    web_dir: str = Field(
        "web/dist", description="the built web page (relative to the working directory)"
    )
    cors_origins: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="origins allowed to call the API from a browser, comma-separated; "
        "unset: the Vite dev server's (localhost:5173) outside production, none in production",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value

    notifier_url: str = Field(
        "http://127.0.0.1:8004",
        description="the notifier's API: /api/webhooks and /api/webhooks/* are forwarded there",
    )
    notifier_timeout_s: float = Field(
        30.0, gt=0, description="bound of a request forwarded to the notifier"
    )
    webhook_allowed_targets: str = Field(
        "",
        description="webhook targets admitted although not public (comma-separated hosts, "
        "IPs, CIDRs; development and tests): a generate request's webhookUrl is checked "
        "with the notifier's policy",
    )

    pipeline_bound_s: float = Field(
        3600.0,
        gt=0,
        description="a generation not finished this long after it was requested is stalled: "
        "counted by vidgen_generations_stalled and named in a log line (every stage has a "
        "shorter bound of its own; keep this above their sum)",
    )
    stalled_check_interval_s: float = Field(
        60.0, gt=0, description="how often the gateway looks for stalled generations"
    )

    @property
    def allowed_origins(self) -> list[str]:
        """CORS origins in force (the setting, or the default of this environment)."""
        if self.cors_origins is not None:
            return list(self.cors_origins)
        return [] if self.env == "production" else list(DEV_SERVER_ORIGINS)

    @property
    def dev_sign_in(self) -> bool:
        """Whether ``POST /api/dev/token`` exists: never in production, never with a JWKS."""
        return self.env != "production" and not self.uses_jwks

    def check_safe(self) -> None:
        """Refuse development secrets outside development, and HS256 in production."""
        super().check_safe()
        self.check_jwt_safe(self.env)
        if "*" in self.allowed_origins:
            raise ConfigurationError("VIDGEN_CORS_ORIGINS lists origins; '*' is not accepted")
        if self.image_min_side_px > self.image_max_side_px:
            raise ConfigurationError("VIDGEN_IMAGE_MIN_SIDE_PX exceeds VIDGEN_IMAGE_MAX_SIDE_PX")
