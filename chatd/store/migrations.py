"""Versioned schema migrations, applied in order at start-up.

``schema_version`` holds one row, the version the database is at.  Each entry
of ``MIGRATIONS`` takes the schema from version ``n - 1`` to ``n``; never edit
one that has shipped, append a new one.  A statement is a string, in which
``{serial}`` and ``{float}`` stand for the dialect's types, or a dict of one
string per dialect where the SQL itself differs (JSON functions, say).
"""

MIGRATIONS = {
    1: [
        """CREATE TABLE messages (
            id {serial},
            room_key TEXT NOT NULL,
            room TEXT NOT NULL,
            nick TEXT NOT NULL,
            text TEXT NOT NULL,
            kind TEXT NOT NULL,
            ts {float} NOT NULL)""",
        "CREATE INDEX messages_room ON messages (room_key, id)",
        """CREATE TABLE accounts (
            key TEXT PRIMARY KEY,
            nick TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            created {float} NOT NULL)""",
    ],
    2: [
        """CREATE TABLE rooms (
            key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            topic TEXT NOT NULL DEFAULT '',
            topic_by TEXT NOT NULL DEFAULT '',
            topic_ts {float} NOT NULL DEFAULT 0,
            invite_only INTEGER NOT NULL DEFAULT 0,
            password TEXT NOT NULL DEFAULT '',
            ops TEXT NOT NULL DEFAULT '[]',
            bans TEXT NOT NULL DEFAULT '[]',
            created {float} NOT NULL DEFAULT 0)""",
        """CREATE TABLE offline_privates (
            id {serial},
            to_key TEXT NOT NULL,
            nick TEXT NOT NULL,
            to_nick TEXT NOT NULL,
            text TEXT NOT NULL,
            ts {float} NOT NULL)""",
        "CREATE INDEX offline_privates_to ON offline_privates (to_key, id)",
    ],
    # Ops and bans as one row per name, so adding a ban on one node and an op on
    # another are two inserts that both survive, where rewriting a JSON list
    # kept only the last writer's.  rooms.ops and rooms.bans stay in the table
    # (dropping a column is awkward on SQLite) but are no longer read or written.
    3: [
        """CREATE TABLE room_entries (
            room_key TEXT NOT NULL,
            list TEXT NOT NULL,
            entry TEXT NOT NULL,
            PRIMARY KEY (room_key, list, entry))""",
        *({
            "sqlite": f"INSERT OR IGNORE INTO room_entries (room_key, list, entry) "
                      f"SELECT rooms.key, '{name}', j.value "
                      f"FROM rooms, json_each(rooms.{name}) AS j",
            "postgresql": f"INSERT INTO room_entries (room_key, list, entry) "
                          f"SELECT rooms.key, '{name}', e FROM rooms, "
                          f"json_array_elements_text(rooms.{name}::json) AS e "
                          f"ON CONFLICT DO NOTHING",
        } for name in ("ops", "bans")),
    ],
    # Rooms are kept by an account (``keep``); rows from before have no owner.
    4: [
        "ALTER TABLE rooms ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
    ],
    # Server bans (chatd.operators): one row per banned nick, account or address
    # range; ``until`` 0 is permanent.  Keyed by what is banned, so banning it
    # again replaces the old ban.
    5: [
        """CREATE TABLE server_bans (
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            until {float} NOT NULL,
            by_nick TEXT NOT NULL,
            reason TEXT NOT NULL,
            created {float} NOT NULL,
            PRIMARY KEY (kind, target))""",
    ],
    # Resume tokens (chatd.accounts): a reconnect logs in with one instead of the
    # password, without argon2.  Only the token's sha256 is kept; taking one
    # deletes it, so each is good once.  Indexed by account to revoke them all.
    6: [
        """CREATE TABLE resume_tokens (
            token_hash TEXT PRIMARY KEY,
            account_key TEXT NOT NULL,
            expires {float} NOT NULL)""",
        "CREATE INDEX resume_tokens_account ON resume_tokens (account_key)",
    ],
}

LATEST = max(MIGRATIONS)

DIALECTS = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "float": "REAL"},
    "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "float": "DOUBLE PRECISION"},
}


class SchemaTooNew(Exception):
    """The database was written by a newer chatd; refuse rather than guess."""


def statements(dialect: str, version: int) -> list:
    out = []
    for sql in MIGRATIONS[version]:
        if isinstance(sql, dict):
            out.append(sql[dialect])  # already in this dialect: no placeholders
        else:
            out.append(sql.format(**DIALECTS[dialect]))
    return out


def migrate(cursor, dialect: str, target: int = LATEST) -> tuple:
    """Bring the schema to ``target`` inside the caller's transaction.

    Returns ``(before, after)`` versions.  Runs in one transaction, so an
    upgrade that fails half-way leaves the database at its old version.
    """
    if dialect == "postgresql":
        # Two daemons starting on one database must not both migrate it.
        cursor.execute("SELECT pg_advisory_xact_lock(7366147)")
    cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    cursor.execute("SELECT version FROM schema_version")
    row = cursor.fetchone()
    if row is None:
        cursor.execute("INSERT INTO schema_version (version) VALUES (0)")
        current = 0
    else:
        current = row[0]
    if current > LATEST:
        raise SchemaTooNew(f"database schema version {current} is newer than this chatd "
                           f"understands ({LATEST}); upgrade chatd")
    for version in range(current + 1, target + 1):
        for sql in statements(dialect, version):
            cursor.execute(sql)
        cursor.execute(_param(dialect, "UPDATE schema_version SET version = ?"), (version,))
    return current, max(current, target)


def _param(dialect: str, sql: str) -> str:
    return sql.replace("?", "%s") if dialect == "postgresql" else sql
