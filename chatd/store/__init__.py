"""Storage: one Deferred-returning interface, SQLite by default, PostgreSQL for production.

The service never touches SQL.  It asks an ``IStore`` provider for history,
accounts, queued private messages and persistent room state; every method
returns a Deferred, and every failure of the database itself arrives as a
``StoreUnavailable`` the service turns into a ``store_unavailable`` error.
"""

from dataclasses import dataclass, field

from zope.interface import Attribute, Interface

# One "join since" or "history" answer never carries more than this many
# messages; the ack says ``"more": true`` and the client asks again.
MAX_PAGE = 500


class StoreUnavailable(Exception):
    """The database could not be reached or failed; nothing was written."""


class StoreRejected(StoreUnavailable):
    """The database refused this data (a data or integrity error); it is up."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    mid: int
    room: str
    nick: str
    text: str
    kind: str
    ts: float


@dataclass(frozen=True, slots=True)
class StoredPrivate:
    pid: int
    nick: str
    to: str
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class Account:
    key: str
    nick: str
    password_hash: str
    created: float


@dataclass(slots=True)
class RoomRecord:
    """A room's persistent state; ops and bans hold lower-cased nick/account names."""

    key: str
    name: str
    topic: str = ""
    topic_by: str = ""
    topic_ts: float = 0.0
    invite_only: bool = False
    password: str = ""
    ops: set = field(default_factory=set)
    bans: set = field(default_factory=set)
    created: float = 0.0


class IStore(Interface):
    """Persistent chat state.  Every method returns a Deferred."""

    healthy = Attribute("False after a database fault, True again after the next success")

    def open():
        """Connect and apply pending schema migrations; fires with the schema version."""

    def close():
        """Finish in-flight writes and release connections."""

    def append_message(room_key, room, nick, text, kind, ts):
        """Store a room message; fires with its id once committed.

        Messages handed in while a write is in flight are committed together
        in the next transaction, in the order they arrived (group commit), so
        ids increase in arrival order.
        """

    def last_mid():
        """The highest stored message id (0 when there is none)."""

    def history(room_key, before=None, since=None, upto=None, limit=50):
        """Messages of a room, oldest first.

        With ``since``: the first ``limit`` messages with ``since < mid``.
        Otherwise: the last ``limit`` messages with ``mid < before``.
        ``upto`` (inclusive) bounds both.
        """

    def create_account(key, nick, password_hash, ts):
        """Fires True if created, False if the name is already registered."""

    def get_account(key):
        """Fires with the ``Account`` or None."""

    def set_password(key, password_hash):
        """Replace an account's password hash."""

    def account_keys():
        """Fires with every registered (lower-cased) name."""

    def queue_private(to_key, nick, to, text, ts):
        """Store a private message for an offline account; fires with its id."""

    def pending_privates(to_key):
        """Queued private messages for an account, oldest first."""

    def delete_privates(to_key, upto):
        """Forget delivered private messages with id <= upto."""

    def save_room(record):
        """Insert or replace a room's persistent state."""

    def load_rooms():
        """Fires with every ``RoomRecord``."""


def open_store(db: str | None, data_dir: str, reactor=None, sqlite_sync: str = "full"):
    """The store for the daemon's options: PostgreSQL for a postgresql:// URL, else SQLite
    (``sqlite_sync``: its ``synchronous`` mode, "full" or "normal")."""
    if db and db.startswith(("postgresql://", "postgres://")):
        from chatd.store.postgres import PostgresStore
        return PostgresStore(db, reactor=reactor)
    if db:
        raise ValueError(f"unsupported --db {db!r}: use a postgresql:// URL or omit it")
    from chatd.store.sqlite import SQLiteStore
    return SQLiteStore.in_dir(data_dir, reactor=reactor, synchronous=sqlite_sync)
