"""The README's configuration table is generated from the settings classes and kept in step."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_configuration_matches_the_settings_classes() -> None:
    gen = _load("gen_config_docs")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == gen.splice(readme, gen.render()), (
        "README's configuration table drifted from the settings: run `make docs`"
    )


def test_every_setting_of_every_service_is_in_the_table() -> None:
    gen = _load("gen_config_docs")
    rendered = gen.render()
    for _, cls in gen._services():
        for env, *_ in gen.rows(cls):
            assert f"`{env}`" in rendered, env
    assert "`KAFKA_BOOTSTRAP_SERVERS`" in rendered
    assert "`RUNWAYML_API_SECRET`" in rendered
