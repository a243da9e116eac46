"""Shared fixtures. Every store-level test runs against SQLite and a real PostgreSQL.

PostgreSQL is the machine's server on 127.0.0.1:5432 (override with KANSA_TEST_PG); each
test gets a fresh schema of its own, dropped afterwards, so tests never see each other.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from standin import Standin

PG_BASE = os.environ.get("KANSA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_BASE else "?"
    return f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = "kt_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_BASE, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_schema_url(schema)
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL: once for SQLite, once for PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture(scope="module")
def standin() -> Iterator[Standin]:
    """The stand-in model provider the gateway tests proxy to (tests/standin.py), one per
    test module. The SDK tests define their own ``standin`` (tests/sdk_standin.py)."""
    s = Standin().start()
    yield s
    s.stop()
