"""Root conftest: the shared fixtures for real PostgreSQL, Kafka and S3."""

pytest_plugins = ["vidgen_testing.plugin"]
