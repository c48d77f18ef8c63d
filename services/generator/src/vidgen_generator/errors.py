"""Errors of the generator service.

GeneratorError
└── ImageUnavailable        the prompt image cannot be read from vidgen's store
                            (``permanent``: it is not there; else the store failed)

Runway's own failures travel as :class:`vidgen_runway.errors.RunwayCallError`.
"""

from __future__ import annotations

from vidgen_common.errors import VidgenError


class GeneratorError(VidgenError):
    """Base of the generator's errors."""


class ImageUnavailable(GeneratorError):
    """The prompt image could not be read; ``permanent`` when it does not exist."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent
