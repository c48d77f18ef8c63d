"""Errors raised by vidgen's Runway adapters (needs the ``sdk`` extra: vidgen-common).

VidgenError (vidgen_common.errors)
└── RunwayCallError     a Runway call failed; its ``classified`` verdict says what to do
"""

from __future__ import annotations

from vidgen_common.errors import VidgenError
from vidgen_runway.verdicts import Classified


class RunwayCallError(VidgenError):
    """A Runway call failed; ``classified`` says what to do. Raised by the services' adapters."""

    def __init__(self, classified: Classified) -> None:
        super().__init__(f"{classified.code}: {classified.message}")
        self.classified = classified
