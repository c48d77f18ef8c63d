"""The fair-share weights setting and score."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vidgen_common.fairshare import FairShareSettings, score


def test_weights_are_read_from_json_and_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGEN_USER_WEIGHTS", '{"b": 2, "a": 0.5}')
    cfg = FairShareSettings()
    assert cfg.weight_params() == {"weight_users": ["a", "b"], "weight_values": [0.5, 2.0]}
    monkeypatch.setenv("VIDGEN_USER_WEIGHTS", '{"a": 0}')
    with pytest.raises(ValidationError, match="weights must be finite and > 0"):
        FairShareSettings()


def test_a_newcomer_scores_below_a_user_with_tasks_running() -> None:
    assert score(in_flight=0, rank=1) < score(in_flight=2, rank=1)
    assert score(in_flight=1, rank=1, weight=2.0) == score(in_flight=0, rank=1)
