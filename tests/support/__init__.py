"""Helpers shared by the cross-service test suites (importable as ``tests.support``)."""
