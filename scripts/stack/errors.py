"""Errors of the stack runner."""

from __future__ import annotations


class StackError(Exception):
    """The stack could not be brought to the state asked for."""


class ComposeError(StackError):
    """A Compose file this runner cannot read as Compose would (or does not support)."""


class UnhealthyError(StackError):
    """A container did not become healthy (or a one-shot did not succeed) in time."""
