"""The one publish point: every event that leaves the service for anyone other
than the requesting session goes through an ``IBus``.

``LocalBus`` (the default) hands events straight to this process's members.
A clustered bus publishes each event once (per room, or per person for a
private message or an invite) to the other nodes and delivers it locally the
same way, so front ends, accounts and moderation never change.
"""

from twisted.internet.defer import succeed
from zope.interface import Interface, implementer

from chatd.metrics import NO_METRICS


class IBus(Interface):
    def publish_room(room_key, event, exclude=None):
        """Deliver ``event`` to every member of the room (``exclude``: one session left out)."""

    def publish_message(room_key, event, exclude, prev):
        """``publish_room`` for a stored room message whose room's message before
        it has id ``prev`` (0: none): a cluster's bus delivers a room's messages
        in that chain, whichever order the other nodes' publishes arrive in."""

    def publish_rooms(room_keys, event, also=None):
        """Deliver once to everyone sharing any of these rooms, plus ``also`` (a session):
        a nick change or a quit."""

    def publish_user(nick_key, event):
        """Deliver to whoever holds the nick (a private message, an invite)."""

    def publish_all(event):
        """Deliver to every session (a server operator's notice)."""

    def publish_remote_user(nick_key, event):
        """Deliver to whoever holds the nick on another node: a Deferred firing
        True if someone did, False if nobody; ``cluster_unavailable`` if the other
        nodes cannot be asked now."""

    def publish_user_state(nick_key, kind, data):
        """Hand a change (``kind``, a dict) to the node that holds the nick, to
        apply there (an operator's kill of someone on another node); fires as
        ``publish_remote_user``."""


@implementer(IBus)
class LocalBus:
    """One process: publishing is local delivery."""

    def __init__(self, rooms, nicks, metrics=NO_METRICS, sessions=()):
        self.rooms = rooms
        self.nicks = nicks
        self.metrics = metrics
        self.sessions = sessions  # every session of this node (the service's set; read only)
        self.publish_room = rooms.deliver  # the hot path: no extra call per message
        self.publish_rooms = rooms.deliver_many

    def publish_message(self, room_key, event, exclude, prev) -> None:
        self.rooms.deliver(room_key, event, exclude)  # one node: in order already

    def publish_user(self, nick_key, event) -> None:
        session = self.nicks.get(nick_key)
        if session is None:
            self.metrics.undelivered()
            return
        # Someone else's event, like a broadcast: not counted as this session's
        # own replies (Session.send), which a flood of senders could overrun.
        self.rooms.deliver_to((session,), event)

    def publish_all(self, event) -> None:
        self.rooms.deliver_to(self.sessions, event)

    def publish_remote_user(self, nick_key, event):
        return succeed(False)  # there are no other nodes

    def publish_user_state(self, nick_key, kind, data):
        return succeed(False)  # there are no other nodes
