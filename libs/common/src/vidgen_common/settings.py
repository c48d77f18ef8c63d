"""Settings shared by every service (pydantic-settings, read from the environment).

Each service subclasses :class:`ServiceSettings` and adds its own fields. Nested groups read
their own prefixes: ``KAFKA_*``, ``DATABASE_URL``, ``S3_*``, ``OTEL_*``. Development defaults are
obviously fake and :meth:`ServiceSettings.check_safe` refuses them outside development.
"""

from __future__ import annotations

from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vidgen_common.errors import ConfigurationError

Environment = Literal["development", "test", "production"]

DEV_S3_SECRET = "vidgen-dev-secret-key-not-for-production"  # noqa: S105 (a known fake)


class KafkaSettings(BaseSettings):
    """How to reach Kafka and how producers and consumers behave."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = Field("127.0.0.1:19092", description="host:port[,host:port…]")
    topic_prefix: str = Field("", description="prepended to every topic name (isolation)")
    enable_idempotence: bool = Field(
        True, description="idempotent producer; off against brokers that refuse InitProducerId"
    )
    compression_type: Literal["gzip", "none"] = Field("gzip", description="producer compression")
    session_timeout_ms: int = Field(
        10_000, ge=1_000, description="consumer group session timeout (short: faster rebalances)"
    )
    heartbeat_interval_ms: int = Field(3_000, ge=100, description="consumer heartbeat interval")
    max_poll_interval_ms: int = Field(
        300_000, ge=1_000, description="longest gap between polls before a consumer is dropped"
    )
    request_timeout_ms: int = Field(30_000, ge=1_000, description="Kafka request timeout")
    fetch_max_wait_ms: int = Field(
        500,
        ge=10,
        le=5_000,
        description="longest time a consumer's fetch waits at the broker for records (Kafka "
        "answers as soon as records arrive; a broker that waits out the bound, like tansu, "
        "adds up to this much to every hop; shorter costs more fetch requests)",
    )
    partitions: int = Field(6, ge=1, description="partitions of topics created on start-up")
    replication_factor: int = Field(
        1, ge=1, description="replication of topics created on start-up"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how clients reach the brokers"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (with SASL_*)"
    )
    sasl_username: str | None = Field(None, description="SASL user (with SASL_*)")
    sasl_password: SecretStr | None = Field(None, description="SASL password (with SASL_*)")
    ssl_cafile: str | None = Field(None, description="CA bundle of the brokers (with *SSL)")
    ssl_certfile: str | None = Field(None, description="client certificate, for mutual TLS")
    ssl_keyfile: str | None = Field(None, description="client key, for mutual TLS")
    handler_retries: int = Field(5, ge=0, description="retries of a failing handler before DLQ")
    retry_backoff_ms: int = Field(200, ge=0, description="first retry delay, doubled each retry")
    retry_backoff_max_ms: int = Field(10_000, ge=0, description="longest retry delay")
    check_interval_s: float = Field(
        5.0,
        gt=0,
        description="how often a service checks that its topics exist (recreating missing "
        "ones) and that the broker still holds what it acknowledged",
    )

    def client_options(self) -> dict[str, Any]:
        """Connection options shared by aiokafka producers, consumers and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        if self.security_protocol.startswith("SASL_"):
            if not self.sasl_username or self.sasl_password is None:
                raise ConfigurationError("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are needed")
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        return options


class DatabaseSettings(BaseSettings):
    """PostgreSQL; each service uses its own schema in it."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:15432/vidgen",
        description="SQLAlchemy URL with the asyncpg driver",
    )
    database_pool_size: int = Field(
        10, ge=1, description="connections a process holds at most (kept open, reused)"
    )
    database_pool_timeout_s: float = Field(
        30.0, gt=0, description="longest wait for a free pooled connection"
    )
    database_echo: bool = Field(False, description="log every SQL statement")
    database_connect_timeout_s: float = Field(
        10.0, gt=0, description="longest wait for a new database connection"
    )


class S3Settings(BaseSettings):
    """The object store (MinIO or any S3)."""

    model_config = SettingsConfigDict(env_prefix="S3_", extra="ignore")

    endpoint: str = Field("http://127.0.0.1:19000", description="URL the services use")
    public_endpoint: str | None = Field(
        None, description="URL presigned links are signed for (defaults to endpoint)"
    )
    access_key: str = Field("vidgen-dev-access-key", description="S3 access key")
    secret_key: SecretStr = Field(
        SecretStr(DEV_S3_SECRET), description="S3 secret key (the default is refused in production)"
    )
    region: str = Field("us-east-1", description="S3 region (used for signing)")
    bucket: str = Field("vidgen", description="bucket holding images and videos")
    presign_ttl_s: int = Field(900, ge=1, description="lifetime of presigned GET URLs")


class TelemetrySettings(BaseSettings):
    """OpenTelemetry: OTLP export when an endpoint is set; a JSON-lines file for tests."""

    model_config = SettingsConfigDict(extra="ignore")

    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector base URL; spans are exported there when set"
    )
    vidgen_trace_file: str | None = Field(None, description="append finished spans as JSON lines")
    vidgen_log_level: str = Field("INFO", description="log level (JSON logs on stderr)")


class OutboxSettings(BaseSettings):
    """The outbox relay: bounds on its database calls, its lease, what it keeps and replays."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_OUTBOX_", extra="ignore")

    command_timeout_s: float = Field(
        5.0,
        gt=0,
        description="bound of every database call of the relay; a connection that does not "
        "answer in time is dropped and opened again",
    )
    lease_s: float = Field(
        10.0,
        gt=0,
        description="a relay whose heartbeat is older than this is taken over by a standby "
        "(its database session is terminated); keep it above the command timeout",
    )
    retention_s: float = Field(
        86_400.0, gt=0, description="published rows are kept this long (what a replay can resend)"
    )
    inbox_retention_s: float = Field(
        7 * 86_400.0,
        gt=0,
        description="handled events are remembered (deduplicated) this long; keep it above "
        "the topics' retention (Kafka's default: 7 days), since a consumer may read a "
        "partition again from its start",
    )
    replay_s: float = Field(
        86_400.0,
        ge=0,
        description="when the broker lost data, rows published up to this long before the "
        "last moment it was known to hold them are published again (covers consumers that "
        "lagged); duplicates are dropped by the consumers' inboxes",
    )

    @model_validator(mode="after")
    def _inbox_outlives_replays(self) -> OutboxSettings:
        # an event can be published again (a replay) as long as its outbox row is kept and
        # replay_s beyond: its consumers must still remember it
        if self.inbox_retention_s < self.retention_s + self.replay_s:
            raise ConfigurationError(
                "VIDGEN_OUTBOX_INBOX_RETENTION_S must be at least VIDGEN_OUTBOX_RETENTION_S + "
                "VIDGEN_OUTBOX_REPLAY_S: a replayed event must still be known to its consumers"
            )
        return self


class ServiceSettings(BaseSettings):
    """Base for every service's settings."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore")

    env: Environment = Field("development", description="development, test or production")
    service_name: str = Field(
        "vidgen", description="name in logs, traces and event sources; its PostgreSQL schema"
    )
    database_schema: str | None = Field(
        None, description="PostgreSQL schema (default: derived from the service name)"
    )
    http_host: str = Field("127.0.0.1", description="address the HTTP server binds")
    http_port: int = Field(0, ge=0, le=65535, description="health/metrics port (0: none)")
    role: Literal["all", "worker", "relay"] = Field(
        "all",
        description="all: handlers and outbox relay in one process; worker: handlers only; "
        "relay: only the outbox relay (run one relay process beside worker processes)",
    )
    startup_backoff_max_s: float = Field(
        10.0,
        gt=0,
        description="longest pause between start-up attempts while the database or the "
        "broker cannot be reached (the process waits, not ready, instead of exiting)",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)

    @property
    def db_schema(self) -> str:
        """The PostgreSQL schema this service owns."""
        return self.database_schema or self.service_name.replace("-", "_")

    def check_safe(self) -> None:
        """Refuse development secrets outside development."""
        if self.env == "production" and self.s3.secret_key.get_secret_value() == DEV_S3_SECRET:
            raise ConfigurationError("S3_SECRET_KEY is the development default; set a real one")
