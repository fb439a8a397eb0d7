"""A throwaway PostgreSQL database on the machine's server, for one test run or module.

Unique per run, dropped afterwards, so runs never see each other's data or
disturb other users of the server.
"""

import os
import uuid
from contextlib import contextmanager

import psycopg2

PG_ADMIN = os.environ.get("CHATD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def admin_connection():
    conn = psycopg2.connect(PG_ADMIN, connect_timeout=5)
    conn.autocommit = True
    return conn


def url_for(name: str) -> str:
    base, _, _ = PG_ADMIN.rpartition("/")
    return f"{base}/{name}"


@contextmanager
def throwaway_database(prefix: str):
    """Create a uniquely named database; yield its name; drop it."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn = admin_connection()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    try:
        yield name
    finally:
        conn = admin_connection()
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
