"""Which model a CloudEvent type decodes into, and how old versions are brought up to date.

An upcaster turns the JSON ``data`` of ``<name>`` version ``n`` into version ``n + 1``.
Decoding an old version applies them step by step until the registered model's version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from vidgen_common.errors import UnknownEventType
from vidgen_common.events.models import ALL_EVENTS, EventData

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_TYPE_RE = re.compile(r"^vidgen\.(?P<name>[a-z.\-]+)\.v(?P<version>\d+)$")


class Catalog:
    """Maps event names to their current model, with upcasters for older versions."""

    def __init__(
        self,
        models: tuple[type[EventData], ...] = ALL_EVENTS,
        upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
    ) -> None:
        self._models = {m.name: m for m in models}
        self._upcasters = dict(upcasters or {})

    def model_for(self, name: str) -> type[EventData]:
        try:
            return self._models[name]
        except KeyError:
            raise UnknownEventType(f"no event named {name!r}") from None

    def parse_type(self, ce_type: str) -> tuple[type[EventData], int]:
        """Model and wire version of a CloudEvent type."""
        match = _TYPE_RE.match(ce_type)
        if match is None:
            raise UnknownEventType(f"not a vidgen event type: {ce_type!r}")
        return self.model_for(match["name"]), int(match["version"])

    def upcast(self, name: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """Bring ``data`` of ``name`` at ``version`` up to the registered model's version."""
        target = self.model_for(name).version
        if version > target:
            raise UnknownEventType(f"{name} v{version} is newer than this code (v{target})")
        while version < target:
            step = self._upcasters.get((name, version))
            if step is None:
                raise UnknownEventType(f"no upcaster for {name} v{version}")
            data = step(data)
            version += 1
        return data


DEFAULT_CATALOG = Catalog()
