"""Database URLs for the store tests: a SQLite file, and a throw-away PostgreSQL schema.

PostgreSQL is the local server (127.0.0.1:5432, user postgres, database ``test``; override
with ``PYMACP_TEST_POSTGRES_URL``). Each use gets a uniquely named schema, dropped after;
when the server is unreachable those tests are skipped and say why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

POSTGRES_URL = os.environ.get("PYMACP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose search_path is a fresh schema; the schema is dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable ({exc}); set PYMACP_TEST_POSTGRES_URL")
    schema = f"console_test_{uuid.uuid4().hex[:12]}"
    try:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        separator = "&" if "?" in POSTGRES_URL else "?"
        yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
