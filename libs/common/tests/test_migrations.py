"""Migrations as ordered SQL files: how a directory of them is read, and that a database
migrated before (its ``schema_migrations`` rows) is carried forward, not migrated again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgen_common.migrations import (
    COMMON_MIGRATIONS,
    Migration,
    load_migrations,
    migrate,
    split_sql,
)
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


_NOTES = "-- notes\nCREATE TABLE notes (id int PRIMARY KEY, body text);\n"
_BODY_INDEX = (
    "-- notes by body\n-- mode: concurrently\n"
    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS notes_body ON notes (body);\n"
)


def _notes_then_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[tuple[Migration, ...], tuple[Migration, ...]]:
    """The table alone, and the table then its ``concurrently`` index migration."""
    monkeypatch.syspath_prepend(str(tmp_path))
    first = load_migrations(_package(tmp_path, {"0001_notes.sql": _NOTES}), "demo")
    both = load_migrations(
        _package(tmp_path, {"0001_notes.sql": _NOTES, "0002_body.sql": _BODY_INDEX}), "demo"
    )
    return first, both


async def _index_valid(engine: AsyncEngine, name: str) -> bool | None:
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE c.relname = :i AND c.relnamespace = current_schema()::regnamespace"
            ),
            {"i": name},
        )
        valid: bool | None = found.scalar_one_or_none()
        return valid


def test_a_concurrently_migration_may_only_build_or_drop_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    fine = load_migrations(_package(tmp_path, {"0001_i.sql": _BODY_INDEX}), "demo")
    assert fine[0].concurrently
    assert fine[0].statements == (
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS notes_body ON notes (body)",
    )
    for wrong in (
        "CREATE INDEX CONCURRENTLY notes_body ON notes (body);\n",  # not idempotent
        "ALTER TABLE notes ADD COLUMN extra int;\n",
    ):
        files = {"0001_i.sql": "-- notes by body\n-- mode: concurrently\n" + wrong}
        with pytest.raises(ValueError, match="concurrently"):
            load_migrations(_package(tmp_path, files), "demo")


@pytest.mark.integration
async def test_writes_go_on_while_a_concurrently_migration_builds_its_index(
    engine: AsyncEngine, db_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction writing to the table stays open while the next migration builds an index
    on it: the build waits for it, and meanwhile other writes are not blocked (a plain
    CREATE INDEX would hold them all until it ends)."""
    first, both = _notes_then_index(tmp_path, monkeypatch)
    assert await migrate(engine, db_schema, first)
    async with engine.connect() as holder:
        await holder.execute(text("INSERT INTO notes VALUES (1, 'one')"))  # left open
        build = asyncio.create_task(migrate(engine, db_schema, both))
        async with engine.connect() as watch:
            for _ in range(200):
                waiting = await watch.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE 'CREATE UNIQUE INDEX CONCURRENTLY%notes_body%'"
                    )
                )
                if waiting.scalar_one() or build.done():
                    break
                await watch.rollback()
                await asyncio.sleep(0.05)
        assert not build.done(), build  # it waits for the open writer...
        async with engine.connect() as writer:  # ...and another writer is not held up
            await writer.execute(text("SET statement_timeout = '5s'"))
            await writer.execute(text("INSERT INTO notes VALUES (2, 'two')"))
            await writer.commit()
        await holder.commit()
    assert await asyncio.wait_for(build, 30) == ["demo:2 notes by body"]
    assert await _index_valid(engine, "notes_body") is True


@pytest.mark.integration
async def test_an_index_left_invalid_by_a_build_cut_short_is_built_again(
    engine: AsyncEngine, db_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, both = _notes_then_index(tmp_path, monkeypatch)
    assert await migrate(engine, db_schema, first)
    async with engine.connect() as conn:
        await conn.execute(text("INSERT INTO notes VALUES (1, 'same'), (2, 'same')"))
        await conn.commit()
        ac = await conn.execution_options(isolation_level="AUTOCOMMIT")
        with pytest.raises(DBAPIError):  # the build fails, the index stays behind, invalid
            await ac.execute(text("CREATE UNIQUE INDEX CONCURRENTLY notes_body ON notes (body)"))
    assert await _index_valid(engine, "notes_body") is False
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM notes WHERE id = 2"))
    assert await migrate(engine, db_schema, both) == ["demo:2 notes by body"]
    assert await _index_valid(engine, "notes_body") is True


@pytest.mark.integration
async def test_replicas_starting_together_build_a_concurrently_index_once(
    engine: AsyncEngine, db_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, both = _notes_then_index(tmp_path, monkeypatch)
    results = await asyncio.gather(*(migrate(engine, db_schema, both) for _ in range(3)))
    assert sorted(results) == [[], [], ["demo:1 notes", "demo:2 notes by body"]]
    assert await _index_valid(engine, "notes_body") is True
