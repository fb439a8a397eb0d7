"""The lasting part of rooms: topic, operators, bans, modes; and pending invites.

A room nobody keeps has this state only while it is live: it is never
stored, and it is forgotten when the room empties (``discard``), as on IRC
servers, so passers-by cannot fill the database or the start-up with rooms.
An operator logged in to an account can ``keep`` a room; from then on it is
stored, and every change goes to the store first, as a change (a ban added,
a mode set), never as the whole record, so two writers never undo each
other.  The in-memory record changes only once the store has it, so an
operator is never told a ban worked that a restart would forget.

Records are held in memory either way (entry checks need no database round
trip and keep working while the store is down).  This module is the only
writer of records, of which rooms are kept, and of invites.

In a cluster every node holds its own records, so each change made here is
also told to the others: ``changed(change)`` (the service publishes it on the
bus) is called with the change itself, once it is applied (for a kept room:
once stored), and the others ``apply_remote`` it to their memory only (the
origin stored it).  Changes, not records, travel: a ban added on one node and
an operator added on another at the same moment are both applied everywhere,
whatever order they arrive in.
"""

from dataclasses import replace

from twisted.internet.defer import succeed

from chatd.store import RoomRecord

SCALARS = frozenset({"topic", "topic_by", "topic_ts", "invite_only", "password", "created",
                     "owner"})
LISTS = frozenset({"ops", "bans"})


class RoomStates:
    def __init__(self, store):
        self.store = store
        self._records = {}  # room key -> RoomRecord
        self._kept = set()  # keys of the rooms that are stored
        self._invites = {}  # room key -> nick keys invited (until used or restart)
        self.changed = None  # callable(change: dict), told each change made here

    def loaded(self, records) -> None:
        """What the store has: every stored room is a kept one."""
        self._records = {r.key: r for r in records}
        self._kept = set(self._records)

    def is_kept(self, key: str) -> bool:
        return key in self._kept

    def kept_by(self, owner: str) -> int:
        """How many rooms the account ``owner`` keeps."""
        return sum(1 for key in self._kept if self._records[key].owner == owner)

    def get(self, key: str) -> RoomRecord | None:
        return self._records.get(key)

    def __len__(self) -> int:
        return len(self._records)

    def names(self) -> dict:
        """room key -> name of every kept room."""
        return {key: self._records[key].name for key in self._kept}

    # -- changes: for a kept room, store first, then memory ----------------------------
    def create(self, key: str, name: str, ts: float, first_op: str | None = None) -> None:
        """A new room: live only, until someone keeps it."""
        self._records[key] = RoomRecord(key=key, name=name, created=ts,
                                        ops={first_op} if first_op else set())
        self._tell({"change": "create", "key": key, "name": name, "ts": ts,
                    "first_op": first_op})

    def discard(self, key: str) -> None:
        """The live room emptied: forget it unless it is kept."""
        if key not in self._kept:
            self._records.pop(key, None)
            self._invites.pop(key, None)

    def set_fields(self, key: str, name: str, **fields):
        """Change scalar fields; fires the record once stored (at once if not kept)."""
        assert fields.keys() <= SCALARS, fields
        d = (self.store.set_room_fields(key, name, fields) if key in self._kept
             else succeed(None))
        return d.addCallback(lambda _: self._apply(key, name, fields)).addCallback(
            self._told, {"change": "fields", "key": key, "name": name, "fields": fields})

    def set_entry(self, key: str, name: str, list_name: str, entry: str, present: bool,
                  by: str | None = None):
        """Add to or remove from ``ops`` or ``bans`` (``by``: the nick who did it, for
        the other nodes); fires the record once stored."""
        assert list_name in LISTS, list_name
        if key not in self._kept:
            d = succeed(None)
        elif present:
            d = self.store.add_room_entry(key, name, list_name, entry)
        else:
            d = self.store.remove_room_entry(key, list_name, entry)

        d.addCallback(lambda _: self._entry(key, name, list_name, entry, present))
        return d.addCallback(self._told, {"change": "entry", "key": key, "name": name,
                                          "list": list_name, "entry": entry,
                                          "present": present, "by": by})

    def _entry(self, key, name, list_name, entry, present) -> RoomRecord:
        record = self._record(key, name)
        entries = set(getattr(record, list_name))
        (entries.add if present else entries.discard)(entry)
        return self._apply(key, name, {list_name: entries})

    def keep(self, key: str, name: str, owner: str):
        """Store the room as it is now, owned by ``owner`` (who becomes a lasting
        operator); fires the record once stored."""
        old = self._record(key, name)
        record = replace(old, owner=owner, ops=set(old.ops) | {owner}, bans=set(old.bans))
        store = self.store
        d = store.set_room_fields(key, name, {f: getattr(record, f) for f in SCALARS})
        for list_name in sorted(LISTS):
            for entry in sorted(getattr(record, list_name)):
                d.addCallback(lambda _, ln=list_name, e=entry:
                              store.add_room_entry(key, name, ln, e))

        def kept(_):
            self._kept.add(key)
            self._records[key] = record
            self._tell({"change": "keep", "key": key, "name": name, "owner": owner})
            return record

        def undo(failure):
            # Half written (the row but not all its entries): take it back, so a
            # restart does not find a kept room with some of its bans missing.
            store.delete_room(key).addErrback(lambda _: None)
            return failure
        return d.addCallbacks(kept, undo)

    def unkeep(self, key: str):
        """Stop storing the room; it lives on while people are in it."""
        d = self.store.delete_room(key)

        def forgotten(_):
            self._unkept(key)
            self._tell({"change": "unkeep", "key": key})
        return d.addCallback(forgotten)

    def _unkept(self, key: str) -> None:
        self._kept.discard(key)
        record = self._records.get(key)
        if record is not None:
            self._records[key] = replace(record, owner="")

    def _record(self, key, name) -> RoomRecord:
        return self._records.get(key) or RoomRecord(key=key, name=name)

    def _apply(self, key, name, changes) -> RoomRecord:
        # A new record object each time: readers holding the old one see a
        # consistent snapshot.
        record = self._records[key] = replace(self._record(key, name), **changes)
        return record

    # -- other nodes' changes --------------------------------------------------------
    def _tell(self, change: dict) -> None:
        if self.changed is not None:
            self.changed(change)

    def _told(self, record, change: dict):
        self._tell(change)
        return record

    def apply_remote(self, change: dict) -> None:
        """Another node's change (see ``changed``): applied here, in memory only.

        A malformed change raises (ValueError, KeyError, TypeError) and changes
        nothing; the bus logs it."""
        kind, key, name = change["change"], str(change["key"]), str(change.get("name", ""))
        if kind == "create":
            if key not in self._records:
                first_op = change.get("first_op")
                self._records[key] = RoomRecord(
                    key=key, name=name, created=float(change["ts"]),
                    ops={str(first_op)} if first_op else set())
        elif kind == "fields":
            fields = dict(change["fields"])
            if not fields.keys() <= SCALARS:
                raise ValueError(f"unknown room fields {sorted(fields)}")
            self._apply(key, name, fields)
        elif kind == "entry":
            list_name = change["list"]
            if list_name not in LISTS:
                raise ValueError(f"unknown room list {list_name!r}")
            self._entry(key, name, list_name, str(change["entry"]), bool(change["present"]))
        elif kind == "keep":
            owner = str(change["owner"])
            old = self._record(key, name)
            self._records[key] = replace(old, owner=owner, ops=set(old.ops) | {owner})
            self._kept.add(key)
        elif kind == "unkeep":
            self._unkept(key)
        elif kind == "invite":
            self._invites.setdefault(key, set()).add(str(change["nick"]))
        else:
            raise ValueError(f"unknown room change {kind!r}")

    # -- invites: live only -----------------------------------------------------------
    def invite(self, key: str, nick_key: str) -> None:
        self._invites.setdefault(key, set()).add(nick_key)
        self._tell({"change": "invite", "key": key, "nick": nick_key})

    def is_invited(self, key: str, nick_key: str) -> bool:
        return nick_key in self._invites.get(key, ())

    def use_invite(self, key: str, nick_key: str) -> None:
        invited = self._invites.get(key)
        if invited is not None:
            invited.discard(nick_key)
            if not invited:
                del self._invites[key]
