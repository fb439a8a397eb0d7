"""The persistent part of rooms: topic, operators, bans, modes; and pending invites.

Records are held in memory (entry checks need no database round trip and
keep working while the store is down) and every change goes to the store
first, as a change (a ban added, a mode set), never as the whole record:
two writers never undo each other.  The in-memory record changes only once
the store has it, so an operator is never told a ban worked that a restart
would forget.  This module is the only writer of either.
"""

from dataclasses import replace

from chatd.store import RoomRecord

SCALARS = frozenset({"topic", "topic_by", "topic_ts", "invite_only", "password", "created"})
LISTS = frozenset({"ops", "bans"})


class RoomStates:
    def __init__(self, store):
        self.store = store
        self._records = {}  # room key -> RoomRecord
        self._invites = {}  # room key -> nick keys invited (until used or restart)

    def loaded(self, records) -> None:
        self._records = {r.key: r for r in records}

    def get(self, key: str) -> RoomRecord | None:
        return self._records.get(key)

    def __len__(self) -> int:
        return len(self._records)

    def names(self) -> dict:
        """room key -> name of every stored room."""
        return {key: r.name for key, r in self._records.items()}

    # -- changes: store first, then memory -------------------------------------------
    def create(self, key: str, name: str, ts: float, first_op: str | None = None):
        """A new room, remembered now (so it can be entered even if saving fails)."""
        record = RoomRecord(key=key, name=name, created=ts,
                            ops={first_op} if first_op else set())
        self._records[key] = record
        d = self.store.set_room_fields(key, name, {"created": ts})
        if first_op:
            d.addCallback(lambda _: self.store.add_room_entry(key, name, "ops", first_op))
        return d

    def set_fields(self, key: str, name: str, **fields):
        """Change scalar fields; fires the record once stored."""
        assert fields.keys() <= SCALARS, fields
        d = self.store.set_room_fields(key, name, fields)
        return d.addCallback(lambda _: self._apply(key, name, fields))

    def set_entry(self, key: str, name: str, list_name: str, entry: str, present: bool):
        """Add to or remove from ``ops`` or ``bans``; fires the record once stored."""
        assert list_name in LISTS, list_name
        if present:
            d = self.store.add_room_entry(key, name, list_name, entry)
        else:
            d = self.store.remove_room_entry(key, list_name, entry)

        def apply(_):
            record = self._record(key, name)
            entries = set(getattr(record, list_name))
            (entries.add if present else entries.discard)(entry)
            return self._apply(key, name, {list_name: entries})
        return d.addCallback(apply)

    def _record(self, key, name) -> RoomRecord:
        return self._records.get(key) or RoomRecord(key=key, name=name)

    def _apply(self, key, name, changes) -> RoomRecord:
        # A new record object each time: readers holding the old one see a
        # consistent snapshot.
        record = self._records[key] = replace(self._record(key, name), **changes)
        return record

    # -- invites: live only -----------------------------------------------------------
    def invite(self, key: str, nick_key: str) -> None:
        self._invites.setdefault(key, set()).add(nick_key)

    def is_invited(self, key: str, nick_key: str) -> bool:
        return nick_key in self._invites.get(key, ())

    def use_invite(self, key: str, nick_key: str) -> None:
        invited = self._invites.get(key)
        if invited is not None:
            invited.discard(nick_key)
            if not invited:
                del self._invites[key]
