"""Write docs/events.asyncapi.yaml from the event models (run: make asyncapi).

Who produces and who consumes each event is not kept by hand: it is each service's ``EMITS``
(what its runtime relays, in ``bootstrap.py``) and the keys of its consumer's handler table
(``handlers.py``), read here.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import yaml

from vidgen_common.bus import Handler
from vidgen_common.events import EventData
from vidgen_common.events.asyncapi import build_document
from vidgen_gateway import bootstrap as gateway
from vidgen_gateway.handlers import ProjectionHandlers
from vidgen_generator import bootstrap as generator
from vidgen_generator.handlers import GeneratorHandlers
from vidgen_media import bootstrap as media
from vidgen_media.handlers import VideoReadyHandler
from vidgen_notifier import bootstrap as notifier
from vidgen_notifier.handlers import NotifierHandlers
from vidgen_poller import bootstrap as poller
from vidgen_poller.handlers import PollerHandlers

HEADER = (
    "# Generated from libs/common/src/vidgen_common/events and each service's emits and "
    "handler table\n# by `make docs`. Do not edit.\n"
)

PRODUCERS: dict[str, tuple[type[EventData], ...]] = {
    "gateway": gateway.EMITS,
    "generator": generator.EMITS,
    "poller": poller.EMITS,
    "media": media.EMITS,
    "notifier": notifier.EMITS,
}
# A handler table depends only on the class (it maps event types to the instance's methods),
# so it is read from an instance that was never initialised: nothing is connected or built.


class _HasTable(Protocol):
    def table(self) -> Mapping[type[EventData], Handler]: ...


HANDLERS: dict[str, type[_HasTable]] = {
    "gateway": ProjectionHandlers,
    "generator": GeneratorHandlers,
    "poller": PollerHandlers,
    "media": VideoReadyHandler,
    "notifier": NotifierHandlers,
}


def consumers() -> dict[str, tuple[type[EventData], ...]]:
    """Service → the event types its consumer's handler table reads."""
    return {name: tuple(cls.__new__(cls).table()) for name, cls in HANDLERS.items()}


def render() -> str:
    document = build_document(PRODUCERS, consumers())
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/events.asyncapi.yaml")
    out.write_text(render(), encoding="utf-8")
    print(f"wrote {out}")
