"""The chat service: the one owner of users, rooms, fan-out and heartbeats.

Front ends know it through the methods below and it knows them only as
``IClientSink`` providers, so a telnet user, a script and a browser share the
same rooms.  Every refusal is a ``ChatError``; the dispatcher turns it into an
error for that client alone.
"""

import itertools
import re
from collections import Counter

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatd import __version__
from chatd.errors import ChatError
from chatd.events import Hello, Join, Message, NickChange, Part, Private, Quit
from chatd.limits import Limits, TokenBucket

NICK_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*\Z")
ROOM_RE = re.compile(r"#[A-Za-z0-9_\-.]+\Z")
# C0 controls and DEL would let one client forge lines on another's terminal.
CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_REASON = 200


def clean_reason(reason: str | None) -> str:
    if not reason:
        return ""
    return CONTROL_RE.sub(" ", str(reason))[:MAX_REASON].strip()


class Session:
    """Per-connection chat state; the protocol object is only its sink."""

    __slots__ = ("sink", "write", "fmt", "host", "nick", "key", "rooms", "current",
                 "bucket", "strikes", "last_seen", "pinged_at", "nick_at", "connected_at",
                 "attached", "__weakref__")

    def __init__(self, sink, host: str, now: float, limits: Limits):
        self.sink = sink
        self.write = sink.write
        self.fmt = sink.wire_format
        self.host = host
        self.nick = None
        self.key = None
        self.rooms = {}
        self.current = None
        self.bucket = TokenBucket(limits.rate, limits.burst, now)
        self.strikes = 0
        self.last_seen = now
        self.pinged_at = now
        self.nick_at = None
        self.connected_at = now
        self.attached = True

    def send(self, event) -> None:
        payload = self.fmt(event)
        if payload:
            self.write(payload)

    def __repr__(self) -> str:
        return f"<Session {self.nick or '-'} from {self.host}>"


class Room:
    __slots__ = ("name", "members", "outlets")

    def __init__(self, name: str):
        self.name = name
        self.members = {}  # nick key -> Session, in join order
        # wire format -> {session: write}: a broadcast encodes once per format
        # present and then only calls the writes.
        self.outlets = {}

    def add(self, session: Session) -> None:
        self.members[session.key] = session
        self.outlets.setdefault(session.fmt, {})[session] = session.write

    def remove(self, session: Session) -> None:
        self.members.pop(session.key, None)
        outlet = self.outlets.get(session.fmt)
        if outlet is not None:
            outlet.pop(session, None)
            if not outlet:
                del self.outlets[session.fmt]

    def broadcast(self, event) -> None:
        # Iterate over snapshots: a write can overflow a member's send queue, and
        # dropping that member removes it from this room in the middle of the loop.
        for fmt, writes in tuple(self.outlets.items()):
            payload = fmt(event)
            for write in tuple(writes.values()):
                write(payload)


class ChatService(Service):
    log = Logger()

    def __init__(self, limits: Limits | None = None, clock=None, server_name: str = "chatd"):
        if clock is None:
            from twisted.internet import reactor as clock
        self.limits = limits or Limits()
        self.clock = clock
        self.server_name = server_name
        self.sessions = set()
        self.nicks = {}  # nick key -> Session
        self.rooms = {}  # room key -> Room
        self.per_host = Counter()
        self.connections = 0
        self._ids = itertools.count(1)
        self._closing = {}  # session -> None, dropped but not yet disconnected
        self._drained = None
        self._stopping = False
        self._heartbeat = LoopingCall(self.heartbeat)
        self._heartbeat.clock = clock

    # -- lifecycle ---------------------------------------------------------
    @property
    def heartbeat_tick(self) -> float:
        lim = self.limits
        return max(0.5, min(lim.ping_interval, lim.ping_timeout - lim.ping_interval) / 2)

    def startService(self):
        super().startService()
        d = self._heartbeat.start(self.heartbeat_tick, now=False)
        d.addErrback(lambda f: self.log.failure("heartbeat loop stopped", f))

    def stopService(self):
        """Tell every client we are going, and fire once they are gone (or aborted)."""
        super().stopService()
        self._stopping = True
        if self._heartbeat.running:
            self._heartbeat.stop()
        for session in list(self.sessions):
            self.drop(session, "server shutting down")
        if not self._closing:
            return succeed(None)
        self.log.info("waiting for {count} connections to close", count=len(self._closing))
        self._drained = Deferred()
        grace = self.clock.callLater(3.0, self._abort_closing)
        self._drained.addBoth(lambda r: grace.active() and grace.cancel() or r)
        return self._drained

    def _abort_closing(self):
        for session in list(self._closing):
            abort = getattr(session.sink, "abort", None)
            if abort is not None:
                abort()
            self.disconnected(session)

    # -- connections -------------------------------------------------------
    def connect(self, sink, host: str) -> Session:
        """Admit a new connection or refuse it with a ChatError."""
        if self._stopping:
            raise ChatError("shutting_down", "the server is shutting down")
        if self.connections >= self.limits.max_connections:
            self.log.warn("refused {host}: connection limit {limit}", host=host,
                          limit=self.limits.max_connections)
            raise ChatError("too_many_connections", "the server is full; try again later")
        if self.per_host[host] >= self.limits.max_per_ip:
            self.log.warn("refused {host}: per-address limit {limit}", host=host,
                          limit=self.limits.max_per_ip)
            raise ChatError("too_many_from_ip", "too many connections from your address")
        self.connections += 1
        self.per_host[host] += 1
        session = Session(sink, host, self.clock.seconds(), self.limits)
        self.sessions.add(session)
        session.send(Hello(self.server_name, __version__, self.public_limits()))
        return session

    def public_limits(self) -> dict:
        lim = self.limits
        return {"max_line": lim.max_line, "max_frame": lim.max_frame,
                "max_message": lim.max_message, "max_nick": lim.max_nick,
                "rate": lim.rate, "burst": lim.burst,
                "ping_interval": lim.ping_interval, "ping_timeout": lim.ping_timeout}

    def drop(self, session: Session, reason: str) -> None:
        """Server-side close: leave everything now, then ask the sink to close."""
        if session.attached:
            self._detach(session, reason)
            self._closing[session] = None
            session.sink.close_session(reason)

    def disconnected(self, session: Session, reason: str = "connection closed") -> None:
        """The transport is gone (called by the front end, exactly when it is)."""
        if session.attached:
            self._detach(session, reason)
        elif session not in self._closing:
            return
        self._closing.pop(session, None)
        self.connections -= 1
        self.per_host[session.host] -= 1
        if self.per_host[session.host] <= 0:
            del self.per_host[session.host]
        if self._drained is not None and not self._closing:
            d, self._drained = self._drained, None
            d.callback(None)

    def _detach(self, session: Session, reason: str) -> None:
        session.attached = False
        self.sessions.discard(session)
        if session.key is not None:
            if self.nicks.get(session.key) is session:
                del self.nicks[session.key]
            event = Quit(session.nick, clean_reason(reason), self.clock.seconds())
            audience = self._audience(session)
            for room in list(session.rooms.values()):
                self._leave(session, room)
            audience.discard(session)
            self._fanout(audience, event)
        self.log.info("session {nick} from {host} closed: {reason}",
                      nick=session.nick, host=session.host, reason=reason)

    # -- input accounting --------------------------------------------------
    def admit(self, session: Session) -> None:
        """Count one request: proof of life, and the flood limit."""
        now = self.clock.seconds()
        session.last_seen = now
        if session.bucket.take(now):
            session.strikes = 0
            return
        session.strikes += 1
        if session.strikes >= self.limits.flood_strikes:
            self.log.warn("dropping {nick} from {host}: excess flood",
                          nick=session.nick, host=session.host)
            self.drop(session, "excess flood")
        raise ChatError("flood", "too many requests; slow down")

    def touch(self, session: Session) -> None:
        session.last_seen = self.clock.seconds()

    def heartbeat(self) -> None:
        """One pass over all sessions: ping the quiet, drop the silent."""
        lim = self.limits
        now = self.clock.seconds()
        for session in list(self.sessions):
            try:
                idle = now - session.last_seen
                if idle >= lim.ping_timeout:
                    self.drop(session, "ping timeout")
                elif session.key is None and now - session.connected_at >= lim.register_timeout:
                    self.drop(session, "registration timeout")
                elif idle >= lim.ping_interval and now - session.pinged_at >= lim.ping_interval:
                    session.pinged_at = now
                    session.sink.send_ping()
            except Exception:
                # One broken session must not stop the heartbeat for the rest.
                self.log.failure("heartbeat failed for {session}", session=session)

    # -- nicks ---------------------------------------------------------------
    def check_nick(self, nick: str) -> str:
        if not nick or len(nick) > self.limits.max_nick or not NICK_RE.match(nick):
            raise ChatError("invalid_nick",
                            f"a nick is 1-{self.limits.max_nick} letters, digits, '_' or '-', "
                            "starting with a letter")
        return nick.lower()

    def set_nick(self, session: Session, nick: str) -> str:
        key = self.check_nick(nick)
        if session.nick == nick:
            return nick
        holder = self.nicks.get(key)
        if holder is not None and holder is not session:
            raise ChatError("nick_taken", f"{nick} is already taken")
        now = self.clock.seconds()
        if session.nick_at is not None and now - session.nick_at < self.limits.nick_interval:
            raise ChatError("nick_too_fast",
                            f"wait {self.limits.nick_interval:g} seconds between nick changes")
        session.nick_at = now
        old = session.nick
        if old is None:
            session.nick, session.key = nick, key
            self.nicks[key] = session
            return nick
        audience = self._audience(session)
        for room in session.rooms.values():
            room.remove(session)
        if self.nicks.get(session.key) is session:
            del self.nicks[session.key]
        session.nick, session.key = nick, key
        self.nicks[key] = session
        for room in session.rooms.values():
            room.add(session)
        audience.add(session)
        self._fanout(audience, NickChange(old, nick, now))
        return nick

    # -- rooms ---------------------------------------------------------------
    def check_room(self, name) -> str:
        if (not isinstance(name, str) or len(name) > self.limits.max_room
                or not ROOM_RE.match(name)):
            raise ChatError("invalid_room",
                            f"a room is '#' and 1-{self.limits.max_room - 1} letters, digits, "
                            "'_', '-' or '.'")
        return name.lower()

    def _require_nick(self, session: Session) -> None:
        if session.key is None:
            raise ChatError("no_nick", "choose a nick first with /nick NAME")

    def _member_room(self, session: Session, name: str | None) -> Room:
        if name is None:
            if session.current is None:
                raise ChatError("not_in_room", "join a room first with /join #room")
            return session.current
        room = session.rooms.get(self.check_room(name))
        if room is None:
            raise ChatError("not_in_room", f"you are not in {name}")
        return room

    def join(self, session: Session, name: str) -> Room:
        self._require_nick(session)
        key = self.check_room(name)
        room = session.rooms.get(key)
        if room is not None:
            session.current = room
            return room
        if len(session.rooms) >= self.limits.max_rooms_per_session:
            raise ChatError("too_many_rooms",
                            f"you may be in at most {self.limits.max_rooms_per_session} rooms")
        room = self.rooms.get(key)
        if room is None:
            room = self.rooms[key] = Room(name)
        room.add(session)
        session.rooms[key] = room
        session.current = room
        room.broadcast(Join(room.name, session.nick, self.clock.seconds()))
        return room

    def part(self, session: Session, name: str | None, reason: str = "") -> Room:
        self._require_nick(session)
        room = self._member_room(session, name)
        room.broadcast(Part(room.name, session.nick, clean_reason(reason),
                            self.clock.seconds()))
        self._leave(session, room)
        return room

    def _leave(self, session: Session, room: Room) -> None:
        room.remove(session)
        key = room.name.lower()
        session.rooms.pop(key, None)
        if session.current is room:
            session.current = next(reversed(session.rooms.values()), None)
        if not room.members:
            self.rooms.pop(key, None)

    def who(self, session: Session, name: str | None) -> Room:
        if name is None:
            return self._member_room(session, None)
        room = self.rooms.get(self.check_room(name))
        if room is None:
            raise ChatError("no_such_room", f"{name} does not exist")
        return room

    def room_list(self) -> list:
        return [{"room": r.name, "members": len(r.members)}
                for r in sorted(self.rooms.values(), key=lambda r: r.name.lower())]

    # -- messages --------------------------------------------------------------
    def check_text(self, text) -> str:
        if not isinstance(text, str) or not text.strip():
            raise ChatError("empty_message", "nothing to send")
        if len(text) > self.limits.max_message:
            raise ChatError("message_too_long",
                            f"a message is at most {self.limits.max_message} characters")
        if CONTROL_RE.search(text):
            raise ChatError("invalid_text", "control characters are not allowed in messages")
        return text

    def say(self, session: Session, room_name: str | None, text, kind: str = "message"):
        self._require_nick(session)
        room = self._member_room(session, room_name)
        text = self.check_text(text)
        event = Message(room.name, session.nick, text, next(self._ids),
                        self.clock.seconds(), kind)
        room.broadcast(event)
        return event

    def private(self, session: Session, to, text) -> Private:
        self._require_nick(session)
        if not isinstance(to, str) or not to:
            raise ChatError("missing_argument", "say who the message is for")
        target = self.nicks.get(self.check_nick(to))
        if target is None:
            raise ChatError("no_such_nick", f"{to} is not online")
        text = self.check_text(text)
        event = Private(session.nick, target.nick, text, next(self._ids), self.clock.seconds())
        target.send(event)
        if target is not session:
            session.send(event)
        return event

    # -- fan-out to a set of sessions -------------------------------------------
    def _audience(self, session: Session) -> set:
        audience = set()
        for room in session.rooms.values():
            audience.update(room.members.values())
        return audience

    @staticmethod
    def _fanout(sessions, event) -> None:
        encoded = {}
        for s in sessions:
            payload = encoded.get(s.fmt)
            if payload is None:
                payload = encoded[s.fmt] = s.fmt(event)
            if payload:
                s.write(payload)

    def set_format(self, session: Session, fmt) -> None:
        """Switch a session's wire format (the line protocol's JSON mode)."""
        for room in session.rooms.values():
            room.remove(session)
        session.fmt = fmt
        for room in session.rooms.values():
            room.add(session)
