"""Store test fixtures: a PostgreSQL database of our own on the local server.

The database is created once per test run with a unique name and dropped at
the end, so runs never see each other's data or disturb other users of the
server.  Each test starts from an empty schema.
"""

import psycopg2
import pytest

from tests.pgdb import throwaway_database, url_for


@pytest.fixture(scope="session")
def pg_database():
    """URL of a fresh database, dropped when the run ends."""
    with throwaway_database("chatd_test") as name:
        yield url_for(name)


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
