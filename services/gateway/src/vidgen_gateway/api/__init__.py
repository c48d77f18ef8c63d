"""The REST API: one router per area (uploads, videos, events, health)."""
