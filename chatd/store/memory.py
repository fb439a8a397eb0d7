"""TEMPORARY in-memory store (to be replaced by the store branch's MemoryStore)."""

from dataclasses import replace

from twisted.internet.defer import succeed
from zope.interface import implementer

from chatd.store import Account, IStore, RoomRecord, StoredMessage, StoredPrivate


@implementer(IStore)
class MemoryStore:
    description = "memory"

    def __init__(self):
        self.healthy = True
        self._messages = []
        self._accounts = {}
        self._privates = []
        self._rooms = {}
        self._ids = 0
        self._pids = 0

    def open(self):
        return succeed(3)

    def close(self):
        return succeed(None)

    def append_message(self, room_key, room, nick, text, kind, ts):
        self._ids += 1
        self._messages.append((room_key, StoredMessage(self._ids, room, nick, text, kind, ts)))
        return succeed(self._ids)

    def last_mid(self):
        return succeed(self._ids)

    def history(self, room_key, before=None, since=None, upto=None, limit=50):
        rows = [m for k, m in self._messages if k == room_key
                and (upto is None or m.mid <= upto)]
        if since is not None:
            return succeed([m for m in rows if m.mid > since][:limit])
        if before is not None:
            rows = [m for m in rows if m.mid < before]
        return succeed(rows[-limit:] if limit else [])

    def create_account(self, key, nick, password_hash, ts):
        if key in self._accounts:
            return succeed(False)
        self._accounts[key] = Account(key, nick, password_hash, ts)
        return succeed(True)

    def get_account(self, key):
        return succeed(self._accounts.get(key))

    def set_password(self, key, password_hash):
        if key in self._accounts:
            self._accounts[key] = replace(self._accounts[key], password_hash=password_hash)
        return succeed(None)

    def account_keys(self):
        return succeed(list(self._accounts))

    def queue_private(self, to_key, nick, to, text, ts, cap=None):
        self._pids += 1
        self._privates.append((to_key, StoredPrivate(self._pids, nick, to, text, ts)))
        return succeed(self._pids)

    def pending_privates(self, to_key, limit=None):
        return succeed([p for k, p in self._privates if k == to_key])

    def delete_privates(self, to_key, upto):
        self._privates = [(k, p) for k, p in self._privates if not (k == to_key and p.pid <= upto)]
        return succeed(None)

    def _room(self, key, name):
        return self._rooms.setdefault(key, RoomRecord(key=key, name=name))

    def set_room_fields(self, key, name, fields):
        r = self._room(key, name)
        for k, v in fields.items():
            setattr(r, k, v)
        return succeed(None)

    def add_room_entry(self, key, name, list_name, entry):
        getattr(self._room(key, name), list_name).add(entry)
        return succeed(None)

    def remove_room_entry(self, key, list_name, entry):
        if key in self._rooms:
            getattr(self._rooms[key], list_name).discard(entry)
        return succeed(None)

    def load_rooms(self):
        return succeed([replace(r, ops=set(r.ops), bans=set(r.bans)) for r in self._rooms.values()])
