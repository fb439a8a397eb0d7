"""An in-memory store for unit tests: the IStore contract, no database.

Every method returns an already-fired Deferred, so a test using it runs
synchronously.  It behaves like the SQL stores where a caller could tell
(ids increasing across rooms, history paging, refusing text a database could
not encode, ``False`` for a taken account name, ``QueueFull``,
``StoreUnavailable`` once closed), so the same contract suite runs on it
(tests/store/contract.py).  Its state lives in a ``MemoryDatabase``; stores
built on one database see each other's writes, as two nodes on one server
would.
"""

import dataclasses

from twisted.internet.defer import fail, succeed
from zope.interface import implementer

from chatd.store import (
    Account,
    IStore,
    QueueFull,
    RoomRecord,
    ServerBan,
    StoredMessage,
    StoredPrivate,
    StoreRejected,
    StoreUnavailable,
    check_room_fields,
    check_room_list,
)
from chatd.store.migrations import LATEST


class MemoryDatabase:
    """What a MemoryStore keeps; outlives the store, like a database file."""

    def __init__(self):
        self.messages = []  # StoredMessage with room_key, in id order
        self.next_mid = 1
        self.room_last = {}  # room key -> id of its last message
        self.accounts = {}  # key -> Account
        self.privates = []  # (to_key, StoredPrivate), in id order
        self.next_pid = 1
        self.rooms = {}  # key -> RoomRecord (ours: never handed out, copies are)
        self.server_bans = {}  # (kind, target) -> ServerBan (frozen: handed out as is)
        self.resume_tokens = {}  # token hash -> (account key, expires)


def _encodable(*values):
    # SQLite and PostgreSQL both refuse text that is not valid UTF-8 (a lone
    # surrogate), as StoreRejected; so do we.
    for v in values:
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeError as e:
                raise StoreRejected(str(e)) from e


def _copy(room: RoomRecord) -> RoomRecord:
    return dataclasses.replace(room, ops=set(room.ops), bans=set(room.bans))


@implementer(IStore)
class MemoryStore:
    def __init__(self, database: MemoryDatabase | None = None):
        self.db = database if database is not None else MemoryDatabase()
        self.description = "memory"
        self.healthy = True
        self._open = False

    def _do(self, fn, *args):
        """Run ``fn`` now; its result or error as a fired Deferred."""
        if not self._open:
            return fail(StoreUnavailable(f"store {self.description} is closed"))
        try:
            return succeed(fn(*args))
        except (StoreUnavailable, QueueFull) as e:
            return fail(e)

    # -- lifecycle ------------------------------------------------------------
    def open(self):
        self._open = True
        return succeed(LATEST)  # the schema version it stands in for

    def close(self):
        self._open = False
        return succeed(None)

    # -- messages ---------------------------------------------------------------
    def append_message(self, room_key, room, nick, text, kind, ts, with_prev=False):
        def do():
            _encodable(room_key, room, nick, text, kind)
            db = self.db
            msg = StoredMessage(db.next_mid, room, nick, text, kind, ts)
            db.next_mid += 1
            db.messages.append((room_key, msg))
            prev = db.room_last.get(room_key, 0)
            db.room_last[room_key] = msg.mid
            return (msg.mid, prev) if with_prev else msg.mid
        return self._do(do)

    def last_mid(self):
        return self._do(lambda: self.db.messages[-1][1].mid if self.db.messages else 0)

    def history(self, room_key, before=None, since=None, upto=None, limit=50):
        def do():
            rows = [m for k, m in self.db.messages if k == room_key
                    and (upto is None or m.mid <= upto)]
            if since is not None:
                return [m for m in rows if m.mid > since][:int(limit)]
            if before is not None:
                rows = [m for m in rows if m.mid < before]
            return rows[-int(limit):] if int(limit) > 0 else []
        return self._do(do)

    # -- accounts -----------------------------------------------------------------
    def create_account(self, key, nick, password_hash, ts):
        def do():
            _encodable(key, nick, password_hash)
            if key in self.db.accounts:
                return False
            self.db.accounts[key] = Account(key, nick, password_hash, ts)
            return True
        return self._do(do)

    def get_account(self, key):
        return self._do(self.db.accounts.get, key)

    def set_password(self, key, password_hash):
        def do():
            _encodable(password_hash)
            acct = self.db.accounts.get(key)
            if acct is not None:
                self.db.accounts[key] = dataclasses.replace(acct, password_hash=password_hash)
        return self._do(do)

    def account_keys(self):
        return self._do(lambda: list(self.db.accounts))

    # -- offline private messages -------------------------------------------------------
    def queue_private(self, to_key, nick, to, text, ts, cap=None):
        def do():
            _encodable(to_key, nick, to, text)
            db = self.db
            if cap is not None and sum(1 for k, _ in db.privates if k == to_key) >= cap:
                raise QueueFull(f"{to_key} already has {cap} private messages queued")
            p = StoredPrivate(db.next_pid, nick, to, text, ts)
            db.next_pid += 1
            db.privates.append((to_key, p))
            return p.pid
        return self._do(do)

    def pending_privates(self, to_key, limit=None):
        def do():
            rows = [p for k, p in self.db.privates if k == to_key]
            return rows if limit is None else rows[:int(limit)]
        return self._do(do)

    def delete_privates(self, to_key, upto):
        def do():
            self.db.privates = [(k, p) for k, p in self.db.privates
                                if not (k == to_key and p.pid <= upto)]
        return self._do(do)

    # -- rooms -----------------------------------------------------------------------------
    def _room(self, key, name):
        room = self.db.rooms.get(key)
        if room is None:
            room = self.db.rooms[key] = RoomRecord(key=key, name=name)
        return room

    def set_room_fields(self, key, name, fields):
        check_room_fields(fields)

        def do():
            _encodable(key, name, *fields.values())
            room = self._room(key, name)
            for column, value in fields.items():
                setattr(room, column, bool(value) if column == "invite_only" else value)
        return self._do(do)

    def add_room_entry(self, key, name, list_name, entry):
        check_room_list(list_name)

        def do():
            _encodable(key, name, entry)
            getattr(self._room(key, name), list_name).add(entry)
        return self._do(do)

    def remove_room_entry(self, key, list_name, entry):
        check_room_list(list_name)

        def do():
            room = self.db.rooms.get(key)
            if room is not None:
                getattr(room, list_name).discard(entry)
        return self._do(do)

    def delete_room(self, key):
        return self._do(lambda: self.db.rooms.pop(key, None) and None)

    def get_room(self, key):
        def do():
            room = self.db.rooms.get(key)
            return None if room is None else _copy(room)
        return self._do(do)

    def load_rooms(self):
        return self._do(lambda: [_copy(r) for _, r in sorted(self.db.rooms.items())])

    # -- server bans -------------------------------------------------------------------
    def add_server_ban(self, ban: ServerBan):
        def do():
            _encodable(ban.kind, ban.target, ban.by, ban.reason)
            self.db.server_bans[(ban.kind, ban.target)] = ban
        return self._do(do)

    def remove_server_ban(self, kind, target):
        return self._do(lambda: self.db.server_bans.pop((kind, target), None) is not None)

    def server_bans(self, now):
        def do():
            bans = self.db.server_bans
            for key in [k for k, b in bans.items() if b.expired(now)]:
                del bans[key]
            return sorted(bans.values(), key=lambda b: (b.kind, b.target))
        return self._do(do)

    # -- resume tokens -----------------------------------------------------------------
    def create_resume_token(self, token_hash, key, expires, now):
        def do():
            _encodable(token_hash, key)
            tokens = self.db.resume_tokens
            for h in [h for h, (k, e) in tokens.items() if k == key and e <= now]:
                del tokens[h]
            if token_hash in tokens:
                raise StoreRejected("duplicate resume token")  # as the primary key would
            tokens[token_hash] = (key, expires)
        return self._do(do)

    def take_resume_token(self, token_hash, now):
        def do():
            key, expires = self.db.resume_tokens.pop(token_hash, (None, 0.0))
            return key if key is not None and expires > now else None
        return self._do(do)

    def exchange_resume_token(self, token_hash, new_hash, key, expires, now):
        def do():
            _encodable(new_hash, key)
            tokens = self.db.resume_tokens
            owner, until = tokens.pop(token_hash, (None, 0.0))
            if owner != key or until <= now:
                return False
            for h in [h for h, (k, e) in tokens.items() if k == key and e <= now]:
                del tokens[h]
            if new_hash in tokens:
                raise StoreRejected("duplicate resume token")  # as the primary key would
            tokens[new_hash] = (key, expires)
            return True
        return self._do(do)

    def revoke_resume_tokens(self, key):
        def do():
            tokens = self.db.resume_tokens
            gone = [h for h, (k, _) in tokens.items() if k == key]
            for h in gone:
                del tokens[h]
            return len(gone)
        return self._do(do)
