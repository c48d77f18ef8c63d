"""Migrations as ordered SQL files: how a directory of them is read, and that a database
migrated before (its ``schema_migrations`` rows) is carried forward, not migrated again."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgen_common.migrations import COMMON_MIGRATIONS, load_migrations, migrate, split_sql
from vidgen_testing import unique


def _package(root: Path, files: dict[str, str]) -> str:
    name = unique("migs_")
    directory = root / name
    directory.mkdir()
    (directory / "__init__.py").write_text("")
    for file, sql in files.items():
        (directory / file).write_text(sql)
    return name


def test_files_are_read_in_version_order_with_their_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    package = _package(
        tmp_path,
        {
            "0002_second_step.sql": "-- the second step\nALTER TABLE t ADD COLUMN b int;\n",
            "0001_first.sql": "-- a first table\n\n-- a comment\nCREATE TABLE t (\n"
            "    a text DEFAULT 'x;y'\n);\n\nCREATE INDEX t_a ON t (a);\n",
            "README.md": "not a migration",
        },
    )
    first, second = load_migrations(package, "demo")
    assert (first.component, first.version, first.name) == ("demo", 1, "a first table")
    assert first.statements == (
        "CREATE TABLE t (\n    a text DEFAULT 'x;y'\n)",
        "CREATE INDEX t_a ON t (a)",
    )
    assert (second.version, second.name) == (2, "the second step")
    assert second.statements == ("ALTER TABLE t ADD COLUMN b int",)


@pytest.mark.parametrize(
    "files",
    [
        {"0001_a.sql": "-- a\nSELECT 1;\n", "0003_c.sql": "-- c\nSELECT 1;\n"},
        {"0001_a.sql": "SELECT 1;\n"},
    ],
    ids=["a-gap-in-versions", "no-name-line"],
)
def test_a_malformed_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"migration|first line"):
        load_migrations(_package(tmp_path, files), "demo")


def test_statements_end_only_at_a_semicolon_ending_a_line() -> None:
    assert split_sql("-- n\nSELECT ';'\n  ;\nSELECT 2") == ("SELECT ';'", "SELECT 2")


def test_the_common_ids_are_those_recorded_by_databases_migrated_before() -> None:
    assert [(m.component, m.version, m.name) for m in COMMON_MIGRATIONS] == [
        ("common", 1, "outbox and inbox"),
        ("common", 2, "outbox relay lease and broker marks"),
        ("common", 3, "inbox pruning index"),
    ]


@pytest.mark.integration
async def test_a_database_migrated_before_is_carried_forward(
    engine: AsyncEngine, db_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first version applied, recorded; then a directory with one more file: only the
    new file runs."""
    monkeypatch.syspath_prepend(str(tmp_path))
    one = {"0001_notes.sql": "-- notes\nCREATE TABLE notes (id int PRIMARY KEY);\n"}
    before = load_migrations(_package(tmp_path, one), "demo")
    assert await migrate(engine, db_schema, [*COMMON_MIGRATIONS, *before])
    two = {**one, "0002_more.sql": "-- more\nALTER TABLE notes ADD COLUMN body text;\n"}
    after = load_migrations(_package(tmp_path, two), "demo")
    assert await migrate(engine, db_schema, [*COMMON_MIGRATIONS, *after]) == ["demo:2 more"]
    assert await migrate(engine, db_schema, [*COMMON_MIGRATIONS, *after]) == []
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT component, version FROM schema_migrations ORDER BY component, version")
        )
        assert [tuple(r) for r in rows] == [
            ("common", 1),
            ("common", 2),
            ("common", 3),
            ("demo", 1),
            ("demo", 2),
        ]
