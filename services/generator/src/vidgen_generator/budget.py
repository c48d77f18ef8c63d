"""The concurrency budget: how many tasks per model may be in flight at Runway at once.

A model's limit is, in order: ``model_budgets[model]``; else, with
``budget_from_organization``, the tier's ``maxConcurrentGenerations`` from
``GET /v1/organization`` (refreshed every ``organization_refresh_s``; the last known value is
kept when Runway cannot be asked); else ``default_budget``. None means no limit. Runway
itself queues tasks over its limit (``THROTTLED``) rather than refusing them; the budget
keeps them here instead, where they can still be cancelled without a Runway call.

The same read gives the day's usage and the credit balance (:mod:`vidgen_generator.holds`);
the organisation is read with ``budget_from_organization`` or ``watch_organization_credits``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from vidgen_generator.runway import Organization, RunwayClient
from vidgen_generator.settings import GeneratorSettings
from vidgen_runway.errors import RunwayCallError

log = logging.getLogger(__name__)


class Budget:
    def __init__(
        self,
        settings: GeneratorSettings,
        runway: RunwayClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._runway = runway
        self._clock = clock
        self._org: dict[str, int | None] = {}
        self._org_at: float | None = None
        self.organization: Organization | None = None
        """The last answer of ``GET /v1/organization`` (None: never read)."""

    async def refresh(self) -> bool:
        """Re-read the organisation when due (with budget_from_organization or
        watch_organization_credits); True when a new answer was read."""
        s = self._settings
        if not (s.budget_from_organization or s.watch_organization_credits):
            return False
        now = self._clock()
        if self._org_at is not None and now - self._org_at < s.organization_refresh_s:
            return False
        self._org_at = now
        try:
            self.organization = await self._runway.organization()
        except RunwayCallError as exc:
            log.warning("could not read Runway's organisation, keeping the last answer: %s", exc)
            return False
        self._org = self.organization.concurrency
        return True

    def refresh_soon(self) -> None:
        """Read the organisation again at the next :meth:`refresh` (a create was refused)."""
        self._org_at = None

    def limit(self, model: str) -> int | None:
        s = self._settings
        if model in s.model_budgets:
            return s.model_budgets[model]
        if s.budget_from_organization and model in self._org:
            return self._org[model]
        return s.default_budget

    def known_models(self) -> set[str]:
        return set(self._settings.model_budgets) | set(self._org)

    def full_models(self, in_flight: Mapping[str, int]) -> list[str]:
        """Models with no room left."""
        full = []
        for model in self.known_models() | set(in_flight):
            limit = self.limit(model)
            if limit is not None and in_flight.get(model, 0) >= limit:
                full.append(model)
        return sorted(full)

    def has_room(self, model: str, in_flight: Mapping[str, int]) -> bool:
        limit = self.limit(model)
        return limit is None or in_flight.get(model, 0) < limit
