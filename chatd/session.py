"""One connection's chat state.  The protocol object is only its sink.

Each field has exactly one writer, named below; everyone else only reads.
That is what lets a cluster (or metrics) intercept every change at its owner.
"""

from chatd.limits import Limits, TokenBucket


class Session:
    __slots__ = (
        # set once by ChatService.connect
        "sink", "host", "connected_at",
        # chatd.rooms.Rooms: how the session's rooms reach it, and where it is
        "write", "room_write", "fmt", "rooms", "current", "joining",
        # chatd.nicks.Nicks
        "nick", "key", "nick_at",
        # chatd.accounts.Accounts: the account key this session is logged in as
        "account",
        # ChatService: liveness, flood control, lifecycle, away message
        "bucket", "strikes", "last_seen", "pinged_at", "attached", "away",
        "__weakref__")

    def __init__(self, sink, host: str, now: float, limits: Limits):
        self.sink = sink
        self.host = host
        self.connected_at = now
        self.write = sink.write
        # A room's broadcast: the sink's ``room_write`` when its ``write`` does more
        # than queue bytes (IRC's sorts out payloads meant for one session).
        self.room_write = getattr(sink, "room_write", None) or self.write
        self.fmt = sink.wire_format
        self.rooms = {}  # room key -> Room, in join order
        self.current = None
        self.joining = {}  # room key -> Room whose history is being fetched
        self.nick = None
        self.key = None
        self.nick_at = None
        self.account = None
        # Enough at once to log in and rejoin every room after a reconnect.
        self.bucket = TokenBucket(limits.rate, limits.burst, now, limits.reconnect_burst)
        self.strikes = 0
        self.last_seen = now
        self.pinged_at = now
        self.attached = True
        self.away = None  # the away message, while the user is away

    def send(self, event) -> None:
        """Encode for this session alone (replies, history); broadcasts encode once per room."""
        payload = self.fmt(event)
        if payload:
            # Counted against the send-queue cap within the turn too (not stored
            # as a bound method: an idle connection would pay for it).
            self.sink.write_reply(payload)

    def __repr__(self) -> str:
        return f"<Session {self.nick or '-'} from {self.host}>"
