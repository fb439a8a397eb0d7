"""Live rooms and their membership, and local fan-out to the members.

The only writer of who is in which room: ``Room.members`` and ``outlets``, and
``Session.rooms``, ``current``, ``joining``, ``fmt`` and ``write``/``room_write``.  A room
exists while someone is in it (or joining it); its persistent part (topic,
operators, bans, modes) belongs to ``chatd.roomstate``.
"""

from chatd.errors import ChatError
from chatd.metrics import NO_METRICS, perf_counter


class Room:
    __slots__ = ("name", "key", "members", "outlets", "joining", "guest_ops")

    def __init__(self, name: str):
        self.name = name
        self.key = name.lower()
        self.members = {}  # nick key -> Session, in join order
        # Sessions whose history is being fetched: room events meanwhile are
        # kept for them and sent after the history, so nothing is missed or
        # shown out of order.
        self.joining = {}  # Session -> [event]
        self.guest_ops = set()  # operators without an account: for this session only
        # wire format -> {session: write}: a broadcast encodes once per format
        # present and then only calls the writes.
        self.outlets = {}

    def nicks(self) -> list:
        return [s.nick for s in self.members.values()]

    def add_member(self, session) -> None:
        """Only ``Rooms`` calls this (and remove_member): it owns membership."""
        self.members[session.key] = session
        self.outlets.setdefault(session.fmt, {})[session] = session.room_write

    def remove_member(self, session) -> None:
        self.members.pop(session.key, None)
        outlet = self.outlets.get(session.fmt)
        if outlet is not None:
            outlet.pop(session, None)
            if not outlet:
                del self.outlets[session.fmt]

    def broadcast(self, event, exclude=None) -> None:
        """The hot path: one encoding per wire format present, then only writes.

        A write never changes the room (an overflowing member is dropped at the
        end of the turn), so the loop needs no snapshot.  ``exclude`` leaves one
        member out, for a front end that does not echo a sender's own message.
        """
        for fmt, writes in self.outlets.items():
            payload = fmt(event)
            if not payload:
                continue
            if exclude is None:
                for write in writes.values():
                    write(payload)
            else:
                for session, write in writes.items():
                    if session is not exclude:
                        write(payload)


class Rooms:
    def __init__(self, on_empty=None, metrics=NO_METRICS):
        self._rooms = {}  # room key -> Room
        self.metrics = metrics
        # Told the key of each room that empties (the lasting state of a room
        # nobody keeps goes with it).
        self.on_empty = on_empty
        self._observers = []  # (on_open, on_close): a cluster's bus follows the live rooms
        # Told each change of a room's members, ``on_members(room, added, removed)``
        # with (nick key, nick) pairs added and nick keys removed: cluster presence
        # (chatd.presence) follows who is where.  Never on the message path.
        self.on_members = None

    def observe(self, on_open=None, on_close=None) -> None:
        """Be told the key of each room that comes to life here and of each that
        empties (a clustered bus subscribes to exactly the rooms with local people)."""
        self._observers.append((on_open, on_close))

    def _tell(self, which: int, key: str) -> None:
        for observer in self._observers:
            if observer[which] is not None:
                observer[which](key)

    def get(self, key: str) -> Room | None:
        return self._rooms.get(key)

    def __len__(self) -> int:
        return len(self._rooms)

    def items(self):
        """(key, Room) of every live room, for reading (listings, checks)."""
        return self._rooms.items()

    def names(self) -> dict:
        """room key -> (name, member count) of every live room."""
        return {key: (room.name, len(room.members)) for key, room in self._rooms.items()}

    def open(self, key: str, name: str) -> Room:
        room = self._rooms.get(key)
        if room is None:
            room = self._rooms[key] = Room(name)
            self._tell(0, key)
        return room

    def member_room(self, session, key: str | None) -> Room:
        """The session's room ``key`` (None: its current room), or ``not_in_room``."""
        if key is None:
            if session.current is None:
                raise ChatError("not_in_room", "join a room first with /join #room")
            return session.current
        room = session.rooms.get(key)
        if room is None:
            raise ChatError("not_in_room", f"you are not in {key}")
        return room

    # -- joining: history first, then membership ---------------------------------
    def begin_join(self, session, room: Room) -> None:
        room.joining[session] = []
        session.joining[room.key] = room

    def end_join(self, session, room: Room) -> list | None:
        """The events kept for ``session`` while it fetched history; None if it gave up."""
        kept = room.joining.pop(session, None)
        session.joining.pop(room.key, None)
        if kept is None or not session.attached:
            self._forget_if_empty(room)
            return None
        if self._rooms.get(room.key) is not room:  # emptied and dropped while we waited
            if self._rooms.setdefault(room.key, room) is room:
                self._tell(0, room.key)
        return kept

    def enter(self, session, room: Room) -> None:
        room.add_member(session)
        session.rooms[room.key] = room
        session.current = room
        if self.on_members is not None:
            self.on_members(room, ((session.key, session.nick),), ())

    def switch(self, session, room: Room) -> None:
        session.current = room

    def leave(self, session, room: Room) -> None:
        room.remove_member(session)
        room.guest_ops.discard(session)
        session.rooms.pop(room.key, None)
        if session.current is room:
            session.current = next(reversed(session.rooms.values()), None)
        if self.on_members is not None:
            self.on_members(room, (), (session.key,))
        self._forget_if_empty(room)

    def leave_all(self, session) -> list:
        """Take a closing session out of every room; returns the keys it was in."""
        for room in list(session.joining.values()):
            room.joining.pop(session, None)
            room.guest_ops.discard(session)
            self._forget_if_empty(room)
        session.joining.clear()
        keys = list(session.rooms)
        for room in list(session.rooms.values()):
            self.leave(session, room)
        return keys

    def _forget_if_empty(self, room: Room) -> None:
        if not room.members and not room.joining and self._rooms.get(room.key) is room:
            del self._rooms[room.key]
            if self.on_empty is not None:
                self.on_empty(room.key)
            self._tell(1, room.key)

    # -- changes to how a member is reached ---------------------------------------
    def renamed(self, session, old_key: str | None) -> None:
        """Re-file a member under its new nick key (Nicks changed it)."""
        for room in session.rooms.values():
            if room.members.get(old_key) is session:
                del room.members[old_key]
            room.members[session.key] = session
            if self.on_members is not None:
                self.on_members(room, ((session.key, session.nick),), (old_key,))

    def set_format(self, session, fmt) -> None:
        """Switch a session's wire format (the line protocol's JSON mode)."""
        for room in session.rooms.values():
            room.remove_member(session)
        session.fmt = fmt
        for room in session.rooms.values():
            room.add_member(session)

    # -- operators without an account ------------------------------------------
    @staticmethod
    def is_guest_op(room: Room, session) -> bool:
        return session in room.guest_ops

    @staticmethod
    def set_guest_op(room: Room, session, granted: bool) -> None:
        if granted:
            room.guest_ops.add(session)
        else:
            room.guest_ops.discard(session)

    # -- local delivery (the bus calls these) -------------------------------------
    def deliver(self, key: str, event, exclude=None) -> None:
        """To the room's local members, and kept for those still receiving history."""
        room = self._rooms.get(key)
        if room is None:
            self.metrics.undelivered()
            return
        started = perf_counter()
        room.broadcast(event, exclude)
        # Once per broadcast, never per write (chatd.metrics).
        self.metrics.broadcast(room.outlets, exclude, perf_counter() - started)
        if room.joining:
            for kept in room.joining.values():
                kept.append(event)

    def deliver_many(self, keys, event, also=None) -> None:
        """Once to each local session sharing any of the rooms (a nick change, a quit)."""
        audience = {}
        for key in keys:
            room = self._rooms.get(key)
            if room is not None:
                audience.update(dict.fromkeys(room.members.values()))
        if also is not None and also.attached:
            audience[also] = None
        self.deliver_to(audience, event)

    def deliver_to(self, sessions, event) -> None:
        """Once to each of ``sessions``, encoded once per wire format among them."""
        encoded = {}  # wire format -> payload
        counts = {}  # wire format -> sessions written to
        for s in sessions:
            fmt = s.fmt
            payload = encoded.get(fmt)
            if payload is None:
                payload = encoded[fmt] = fmt(event)
            if payload:
                s.write(payload)
                counts[fmt] = counts.get(fmt, 0) + 1
        self.metrics.delivered_by_format(counts)
