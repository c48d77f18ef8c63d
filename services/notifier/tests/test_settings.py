"""Development keys are refused outside development."""

from __future__ import annotations

import pytest

from vidgen_common.errors import ConfigurationError
from vidgen_notifier.settings import NotifierSettings

REAL_JWT = {"jwt_secret": "x" * 40}


def test_development_defaults_are_refused_outside_development() -> None:
    NotifierSettings().check_safe()
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRET_KEY"):
        NotifierSettings(env="test", **REAL_JWT).check_safe()
    with pytest.raises(ConfigurationError, match="WEBHOOK_SIGNING_KEY"):
        NotifierSettings(env="test", webhook_secret_key="a" * 44, **REAL_JWT).check_safe()
    with pytest.raises(ConfigurationError, match="JWT_SECRET"):
        NotifierSettings(env="test").check_safe()


def test_the_lease_outlasts_the_timeout() -> None:
    with pytest.raises(ConfigurationError, match="LEASE"):
        NotifierSettings(webhook_timeout_s=30, webhook_lease_s=20).check_safe()
