"""Store test fixtures: a PostgreSQL database of our own on the local server.

The database is created once per test run with a unique name and dropped at
the end, so runs never see each other's data or disturb other users of the
server.  Each test starts from an empty schema.
"""

import os
import uuid

import psycopg2
import pytest

PG_ADMIN = os.environ.get("CHATD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin():
    conn = psycopg2.connect(PG_ADMIN, connect_timeout=5)
    conn.autocommit = True
    return conn


def pg_url_for(name: str) -> str:
    base, _, _ = PG_ADMIN.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_database():
    """URL of a fresh database, dropped when the run ends."""
    name = f"chatd_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    yield pg_url_for(name)
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def reset_schema(url: str) -> None:
    conn = psycopg2.connect(url, connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    conn.close()


@pytest.fixture
def pg_url(request, pg_database):
    reset_schema(pg_database)
    if request.instance is not None:
        request.instance.pg_url = pg_database
    return pg_database
