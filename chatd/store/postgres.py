"""The production store: PostgreSQL through psycopg2 on adbapi's thread pool.

psycopg2 is blocking, so it runs on adbapi's threads and never on the reactor.
A connection that died (a restarted server, a cut network) is dropped and
the next query opens a new one (see ``SQLStore._transaction``), which is how
the daemon recovers from an outage without a restart.
"""

from twisted.enterprise import adbapi

from chatd.store.sql import SQLStore


def _setup(conn):
    # Statements are our own short queries; anything slower is a sick server.
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = 10000")
    conn.commit()


def _redact(url: str) -> str:
    """The URL for logs, without a password."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in creds else url


class PostgresStore(SQLStore):
    dialect = "postgresql"

    def __init__(self, url: str, reactor=None, pool_size: int = 4):
        super().__init__(f"postgresql:{_redact(url)}")
        self.url = url
        self.reactor = reactor
        self.pool_size = pool_size

    def make_pool(self) -> adbapi.ConnectionPool:
        kw = {"cp_reactor": self.reactor} if self.reactor is not None else {}
        return adbapi.ConnectionPool(
            "psycopg2", self.url, cp_min=1, cp_max=self.pool_size, cp_openfun=_setup,
            # Fail fast and notice a dead peer instead of hanging a pool thread.
            connect_timeout=3, keepalives=1, keepalives_idle=10, keepalives_interval=5,
            keepalives_count=3, **kw)
