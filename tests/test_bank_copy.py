"""The test bank's copy on PostgreSQL (tests/sync_support.py, ``copy_bank``): whatever the earlier test left in
the database, the next test gets exactly the template's bank, by its rows alone when the schema kept its shape
and by the whole dump when a test changed the shape (a trigger switched off, a table added)."""

from __future__ import annotations

import os

import psycopg
import pytest
from sync_support import (
    SCHEMA_SHAPE,
    build_bank,
    copy_bank,
    drop_pg_database,
    empty_public_schema,
    pg_bank_template,
    pg_dump_sql,
    pg_template_url,
)

pytestmark = pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"),
                                reason="PostgreSQL (TEST_DATABASE_URL; .ci/run sets it)")


@pytest.fixture
def template_and_target(tmp_path):
    source, target = pg_template_url("copy-source"), pg_template_url("copy-target")
    try:
        for url in (source, target):
            empty_public_schema(url)
        build_bank(source, tmp_path / "keys")
        yield pg_bank_template(source, tmp_path / "keys"), target
    finally:
        drop_pg_database(source)
        drop_pg_database(target)


def relation_id(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT %s::regclass::oid", (f"public.{table}",)).fetchone()[0]


def copied(template, url: str, keys_dir) -> tuple[str, str]:
    """Copy the bank; what the database holds then: its shape and its rows (with the sequences' values)."""
    assert copy_bank(template, url, keys_dir)
    assert sorted(path.name for path in keys_dir.iterdir()) == sorted(path.name for path in template.keys_dir.iterdir())
    with psycopg.connect(url) as conn:
        shape = conn.execute(SCHEMA_SHAPE).fetchone()[0]
    return shape, pg_dump_sql(url, "--data-only")


def test_a_bank_used_by_a_test_is_replaced_row_for_row(template_and_target, tmp_path):
    template, target = template_and_target
    assert template.rows_sql is not None  # the suite's role is a superuser: the cheap path can be taken
    first = copied(template, target, tmp_path / "k1")  # into an empty schema: the whole dump
    assert first == (template.shape, template.rows_sql)
    tables = relation_id(target, "entry")
    with psycopg.connect(target) as conn:  # what a test leaves behind: rows, changed rows, sequence values
        conn.execute("INSERT INTO server_setting (key, value) VALUES ('left-behind', '1')")
        conn.execute("UPDATE customer SET name = 'changed'")
        conn.execute("SELECT nextval(oid) FROM pg_class WHERE relkind = 'S' AND relnamespace = 'public'::regnamespace")
    assert copied(template, target, tmp_path / "k2") == first
    assert relation_id(target, "entry") == tables  # the same tables: only the rows were replaced


@pytest.mark.parametrize("change", [
    "ALTER TABLE posting DISABLE TRIGGER USER",
    "CREATE TABLE left_behind (id integer)",
    "ALTER TABLE customer ADD COLUMN nickname text",
    "DROP INDEX posting_account_id",
])
def test_a_schema_a_test_changed_is_built_again(template_and_target, tmp_path, change):
    template, target = template_and_target
    first = copied(template, target, tmp_path / "k1")
    tables = relation_id(target, "entry")
    with psycopg.connect(target) as conn:
        conn.execute(change)
        assert conn.execute(SCHEMA_SHAPE).fetchone()[0] != template.shape
    assert copied(template, target, tmp_path / "k2") == first
    assert relation_id(target, "entry") != tables  # dropped and made again from the dump
