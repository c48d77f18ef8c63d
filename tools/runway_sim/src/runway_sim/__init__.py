"""Runway API simulator (development and tests only)."""
