"""Join and part notices under storms: coalesced in a window, silent in a large room.

The owner of the notices not yet sent (one open window per room).  Rooms
(chatd.rooms) stays the owner of membership: this module is told of each
change after the fact and decides how the room hears of it.

* A quiet room hears of a join or part at once, as always; that opens a
  window of ``--coalesce-window`` seconds.  Joins and parts (and quits) in
  that window are gathered and published at its end as one ``Presence``
  event: encoded once per wire format, written once to each member.  A window
  that gathered a single change sends it as the usual ``join``, ``part`` or
  ``quit`` (reason included), only later.  A window that gathered something
  opens the next one; a window that gathered nothing
  closes, so the next join is announced at once again.
* Within a window changes net out per nick: one that joined and left (or left
  and came back) is in neither list; a nick change moves its pending join to
  the new nick.  The lists are capped at ``LISTED`` nicks each, with totals, so
  a notice's size per receiver is bounded whatever the storm.
* A room of at least ``--large-room`` members announces no joins, parts or
  quits at all: a joiner is told the member count instead of the list, and
  ``who`` shows who is there (chatd.service).

Every notice is published through the bus, like any other room event.
"""

from twisted.logger import Logger

from chatd.events import Join, Part, Presence
from chatd.metrics import NO_METRICS

LISTED = 50  # nicks named in each list of one Presence notice


class _Window:
    __slots__ = ("name", "pending", "call")

    def __init__(self, name: str, call):
        self.name = name
        # nick key -> [nick, +1 joined / -1 left, the event had it been sent alone],
        # in order of arrival
        self.pending = {}
        self.call = call


class PresenceNotices:
    log = Logger()

    def __init__(self, bus, clock, limits, rooms, metrics=NO_METRICS):
        self.bus = bus
        self.metrics = metrics
        self.rooms = rooms  # read only: how many are in a room now
        self.clock = clock
        self.limits = limits
        self._windows = {}  # room key -> _Window
        self._stopped = False

    def is_large(self, members: int) -> bool:
        threshold = self.limits.large_room
        return bool(threshold) and members >= threshold

    # -- what happened -----------------------------------------------------------
    def joined(self, room, session) -> None:
        """``session`` is now a member of ``room``."""
        if self._stopped:
            return
        window = self._windows.get(room.key)
        if self.is_large(len(room.members)):
            self.metrics.presence("unannounced")
        elif window is None:
            self.metrics.presence("at_once")
            self.bus.publish_room(room.key, Join(room.name, session.nick, self.clock.seconds()))
            self._open(room.key, room.name)
        else:
            self.metrics.presence("gathered")
            self._note(window, session.key, session.nick, 1,
                       Join(room.name, session.nick, self.clock.seconds()))

    def parting(self, room, session, reason: str) -> None:
        """``session`` is about to leave ``room`` (it still hears an immediate notice)."""
        if self._stopped:
            return
        window = self._windows.get(room.key)
        event = Part(room.name, session.nick, reason, self.clock.seconds())
        if self.is_large(len(room.members)):
            self.metrics.presence("unannounced")
        elif window is None:
            self.metrics.presence("at_once")
            self.bus.publish_room(room.key, event)
            self._open(room.key, room.name)
        else:
            self.metrics.presence("gathered")
            self._note(window, session.key, session.nick, -1, event)

    def quitting(self, rooms, key: str, gone) -> list:
        """The session with nick ``key`` has left ``rooms`` (Room objects) by
        closing; ``gone`` is its Quit event.

        Returns the keys of the rooms to be sent the ``Quit`` now; in the others
        the quit is gathered in the open window, or not announced (large room).
        """
        if self._stopped:
            return []
        now_keys = []
        for room in rooms:
            if not room.members:
                # Nobody left here to tell, but with several nodes the room's
                # members elsewhere are: the bus carries the Quit (one node: a no-op).
                now_keys.append(room.key)
                continue
            window = self._windows.get(room.key)
            if self.is_large(len(room.members) + 1):
                self.metrics.presence("unannounced")
            elif window is None:
                self.metrics.presence("at_once")
                now_keys.append(room.key)
                self._open(room.key, room.name)
            else:
                self.metrics.presence("gathered")
                self._note(window, key, gone.nick, -1, gone)
        return now_keys

    def forget(self, room_key: str, key: str) -> None:
        """A member's leaving is announced by its own event (a kick): drop what is pending."""
        window = self._windows.get(room_key)
        if window is not None:
            window.pending.pop(key, None)

    def renamed(self, room_keys, old_key: str, nick: str, key: str) -> None:
        """A member's pending join follows it to its new nick."""
        for room_key in room_keys:
            window = self._windows.get(room_key)
            if window is None or old_key not in window.pending:
                continue
            _old_nick, delta, event = window.pending.pop(old_key)
            if isinstance(event, Join):
                event = Join(event.room, nick, event.ts)
            self._note(window, key, nick, delta, event)

    # -- windows -----------------------------------------------------------------
    @staticmethod
    def _note(window: _Window, key: str, nick: str, delta: int, event) -> None:
        entry = window.pending.get(key)
        if entry is None:
            window.pending[key] = [nick, delta, event]
            return
        total = entry[1] + delta
        if total == 0:
            del window.pending[key]  # came and went, or went and came back
        else:
            window.pending[key] = [nick, max(-1, min(1, total)), event]

    def _open(self, room_key: str, name: str) -> None:
        seconds = self.limits.coalesce_window
        if seconds > 0:
            self._windows[room_key] = _Window(
                name, self.clock.callLater(seconds, self._close, room_key))

    def _close(self, room_key: str) -> None:
        window = self._windows.pop(room_key, None)
        if window is None:
            return
        room = self.rooms.get(room_key)
        if not window.pending or room is None or self.is_large(len(room.members)):
            return  # quiet (the next change is announced at once), gone, or not announced
        try:
            self.flush(room_key, window)
        except Exception:
            # A notice lost is better than a room whose windows never close.
            self.log.failure("presence notice for {room} failed", room=window.name)

    def flush(self, room_key: str, window: _Window) -> None:
        self._open(room_key, window.name)
        if len(window.pending) == 1:
            [(_nick, _delta, event)] = window.pending.values()
            self.bus.publish_room(room_key, event)  # one change reads as it always did
            return
        joined = [nick for nick, delta, _ in window.pending.values() if delta > 0]
        left = [nick for nick, delta, _ in window.pending.values() if delta < 0]
        self.bus.publish_room(room_key, Presence(window.name, tuple(joined[:LISTED]), len(joined),
                                                 tuple(left[:LISTED]), len(left),
                                                 self.clock.seconds()))

    # -- ends ----------------------------------------------------------------------
    def discard(self, room_key: str) -> None:
        """The room is gone: nobody is left to tell."""
        window = self._windows.pop(room_key, None)
        if window is not None and window.call.active():
            window.call.cancel()

    def stop(self) -> None:
        """Shutting down: cancel every window; nothing more is announced."""
        self._stopped = True
        for key in list(self._windows):
            self.discard(key)
