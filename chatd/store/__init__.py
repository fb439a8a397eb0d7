"""Storage: one Deferred-returning interface, SQLite by default, PostgreSQL for production.

The service never touches SQL.  It asks an ``IStore`` provider for history,
accounts, queued private messages and persistent room state; every method
returns a Deferred, and every failure of the database itself arrives as a
``StoreUnavailable`` the service turns into a ``store_unavailable`` error.
That includes a database that does not answer within the store's ``timeout``.

Room state is stored as changes (set these fields, add this ban, remove that
op), never as a whole record, so two nodes changing one room at the same time
both keep their change.  ``MemoryStore`` (chatd.store.memory) is an in-memory
provider with the same behaviour, for unit tests.
"""

from dataclasses import dataclass, field

from zope.interface import Attribute, Interface

# One "join since" or "history" answer never carries more than this many
# messages; the ack says ``"more": true`` and the client asks again.
MAX_PAGE = 500


class StoreUnavailable(Exception):
    """The database could not be reached, failed, or did not answer within the timeout.

    After a fault nothing was written; after a timeout a write's outcome is unknown.
    """


class StoreRejected(StoreUnavailable):
    """The database refused this data (a data or integrity error); it is up."""


class QueueFull(Exception):
    """The recipient already has ``cap`` private messages queued; nothing was queued.

    Not a ``StoreUnavailable``: the database is fine, this recipient is full.
    """


# The scalar room columns ``set_room_fields`` may change, and the lists of
# names ``add_room_entry`` / ``remove_room_entry`` work on.
ROOM_FIELDS = frozenset({"topic", "topic_by", "topic_ts", "invite_only", "password", "created",
                         "owner"})
ROOM_LISTS = frozenset({"ops", "bans"})


def check_room_fields(fields: dict) -> None:
    """Raise ValueError for a field ``set_room_fields`` does not know (a caller's bug)."""
    unknown = set(fields) - ROOM_FIELDS
    if unknown:
        raise ValueError(f"unknown room fields {sorted(unknown)}; allowed: {sorted(ROOM_FIELDS)}")


def check_room_list(list_name: str) -> None:
    if list_name not in ROOM_LISTS:
        raise ValueError(f"unknown room list {list_name!r}; allowed: {sorted(ROOM_LISTS)}")


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
    owner: str = ""  # the account that keeps the room ("" for rooms kept before owners)


# What a server ban names: a nick, an account, or an address range (CIDR).
BAN_KINDS = ("nick", "account", "addr")


@dataclass(frozen=True, slots=True)
class ServerBan:
    """A server-wide ban (chatd.operators); ``until`` 0 means permanent."""

    kind: str  # one of BAN_KINDS
    target: str  # a lower-cased nick or account name, or a network like 10.0.0.0/8
    until: float
    by: str
    reason: str
    created: float

    def expired(self, now: float) -> bool:
        return self.until != 0 and self.until <= now


class IStore(Interface):
    """Persistent chat state.  Every method returns a Deferred.

    A database fault, or no answer within the store's timeout, fails the
    Deferred with ``StoreUnavailable``.  After a timeout the outcome of a write
    is unknown (it may still have committed): callers treat it as not done.
    Arguments a caller could never legitimately pass (an unknown room field
    or list) raise ``ValueError`` at once.
    """

    healthy = Attribute("False after a database fault, True again after the next success")
    description = Attribute("What and where the store is, for logs (never a password)")

    def open():
        """Connect and apply pending schema migrations; fires with the schema version."""

    def close():
        """Finish in-flight writes and release connections."""

    def append_message(room_key, room, nick, text, kind, ts, with_prev=False):
        """Store a room message; fires with its id once committed.

        Messages handed in while a write is in flight are committed together
        in the next transaction, in the order they arrived (group commit), so
        ids increase in arrival order.  Ids increase across all rooms.

        ``with_prev``: fires with ``(id, prev)`` instead, ``prev`` being the id
        of the room's message just before it (0 for its first), read in the
        same transaction under the room's lock: the room's messages form a
        chain that a node receiving them out of order puts back in order
        (chatd.redisbus).
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

    def queue_private(to_key, nick, to, text, ts, cap=None):
        """Store a private message for an offline account; fires with its id.

        With ``cap``: fails with ``QueueFull`` (and stores nothing) when
        ``to_key`` already has ``cap`` messages queued.
        """

    def pending_privates(to_key, limit=None):
        """Queued private messages for an account, oldest first; at most ``limit``."""

    def delete_privates(to_key, upto):
        """Forget delivered private messages with id <= upto."""

    def set_room_fields(key, name, fields):
        """Create the room (``key``, display ``name``) if it is new, then set only
        ``fields`` (a dict, keys from ``ROOM_FIELDS``); other columns keep their
        value, and an existing room keeps its name.  Fires None."""

    def add_room_entry(key, name, list_name, entry):
        """Add ``entry`` (a lower-cased name) to the room's ``list_name`` ("ops" or
        "bans"), creating the room if it is new.  Idempotent.  Fires None."""

    def remove_room_entry(key, list_name, entry):
        """Remove ``entry`` from the room's ``list_name`` if there.  Fires None."""

    def delete_room(key):
        """Forget the room and its entries.  Fires None."""

    def get_room(key):
        """Fires with the room's ``RoomRecord`` as stored now, or None."""

    def load_rooms():
        """Fires with every ``RoomRecord``, ops and bans included."""

    def add_server_ban(ban):
        """Store a ``ServerBan``, replacing one on the same (kind, target).  Fires None."""

    def remove_server_ban(kind, target):
        """Forget the ban on (kind, target); fires True if there was one."""

    def server_bans(now):
        """Fires with every ``ServerBan`` still in force at ``now``; expired ones are
        deleted (pruned) on the way."""

    def create_resume_token(token_hash, key, expires, now):
        """Keep a resume token (its hash only) for account ``key`` until ``expires``;
        the account's tokens expired by ``now`` are deleted on the way.  Fires None."""

    def take_resume_token(token_hash, now):
        """Delete the token and fire with its account key, or None if there was no
        such token or it expired by ``now``.  Atomic: of two takers of one token,
        only one gets the account."""

    def exchange_resume_token(token_hash, new_hash, key, expires, now):
        """``take_resume_token(token_hash, now)`` and, if it gave ``key``,
        ``create_resume_token(new_hash, key, expires, now)``, in one transaction
        (a resume's one commit); fires True if the token was taken for ``key``
        and the new one kept, False if it was refused (gone all the same)."""

    def revoke_resume_tokens(key):
        """Delete every resume token of account ``key``; fires with how many."""


def open_store(db: str | None, data_dir: str, reactor=None, sqlite_sync: str = "full",
               timeout: float = 10.0):
    """The store for the daemon's options: PostgreSQL for a postgresql:// URL, else SQLite
    (``sqlite_sync``: its ``synchronous`` mode, "full" or "normal").  ``timeout``
    (``--store-timeout``) bounds every operation, in seconds."""
    if db and db.startswith(("postgresql://", "postgres://")):
        from chatd.store.postgres import PostgresStore
        return PostgresStore(db, reactor=reactor, timeout=timeout)
    if db:
        raise ValueError(f"unsupported --db {db!r}: use a postgresql:// URL or omit it")
    from chatd.store.sqlite import SQLiteStore
    return SQLiteStore.in_dir(data_dir, reactor=reactor, synchronous=sqlite_sync,
                              timeout=timeout)
