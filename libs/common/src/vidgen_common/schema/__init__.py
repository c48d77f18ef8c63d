"""The common tables (outbox, inbox, relay lease) as ordered SQL files, applied first."""
