"""vidgen common library: events, bus, outbox/inbox, db, storage, telemetry, settings."""
