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
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatd import __version__
from chatd.accounts import AccountFlows
from chatd.errors import ChatError
from chatd.events import Hello, Join, Message, NickChange, Notice, Part, Private, Quit
from chatd.limits import Limits, TokenBucket
from chatd.moderation import Moderation
from chatd.store import MAX_PAGE, StoreRejected, StoreUnavailable

NICK_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*\Z")
ROOM_RE = re.compile(r"#[A-Za-z0-9_\-.]+\Z")
# C0 and C1 controls (C1 too: terminals obey U+0085 NEL and U+009B CSI in UTF-8),
# DEL and the Unicode line separators would let one client forge lines on
# another's terminal or split a line for a client reading with splitlines().
CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
MAX_REASON = 200


def clean_reason(reason: str | None) -> str:
    if not reason:
        return ""
    return CONTROL_RE.sub(" ", str(reason))[:MAX_REASON].strip()


class Session:
    """Per-connection chat state; the protocol object is only its sink."""

    __slots__ = ("sink", "write", "fmt", "host", "nick", "key", "rooms", "current",
                 "bucket", "strikes", "last_seen", "pinged_at", "nick_at", "connected_at",
                 "attached", "account", "joining", "__weakref__")

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
        self.account = None  # the account key this session logged in as
        self.joining = {}  # room key -> Room whose history is being fetched

    def send(self, event) -> None:
        payload = self.fmt(event)
        if payload:
            self.write(payload)

    def __repr__(self) -> str:
        return f"<Session {self.nick or '-'} from {self.host}>"


class Room:
    __slots__ = ("name", "members", "outlets", "joining", "guest_ops")

    def __init__(self, name: str):
        self.name = name
        self.members = {}  # nick key -> Session, in join order
        # Sessions whose history is being fetched: room events meanwhile are
        # kept for them and sent after the history, so nothing is missed or
        # shown out of order.
        self.joining = {}  # Session -> [event]
        self.guest_ops = set()  # operators without an account: for this session only
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
        # A write never changes the room: an overflowing member is dropped after
        # the loop (OutputQueue defers it), so no snapshot is needed.
        for fmt, writes in self.outlets.items():
            payload = fmt(event)
            for write in writes.values():
                write(payload)


class ChatService(Service):
    log = Logger()

    def __init__(self, limits: Limits | None = None, clock=None, server_name: str = "chatd",
                 store=None, history: int = 50, passwords=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.limits = limits or Limits()
        # Without a store (unit tests of the live paths) nothing persists and
        # accounts are unavailable; the daemon always has one.
        self.store = store
        self.history_size = history
        self.last_mid = 0  # the highest stored message id broadcast so far
        self.registered = set()  # account keys, i.e. registered nicks in lower case
        self.accounts = {}  # account key -> the session logged in as it
        self.room_state = {}  # room key -> RoomRecord, the persistent part of a room
        self.invites = {}  # room key -> nick keys invited (until used or restart)
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
        self.auth = AccountFlows(self, passwords)
        self.mod = Moderation(self)

    # -- lifecycle ---------------------------------------------------------
    @property
    def heartbeat_tick(self) -> float:
        lim = self.limits
        return max(0.5, min(lim.ping_interval, lim.ping_timeout - lim.ping_interval) / 2)

    def load(self):
        """Open the store and read what the service keeps in memory; fires when ready.

        Registered names and room state are held in memory so that nick
        protection, bans and modes keep working while the store is down.
        """
        if self.store is None:
            return succeed(None)
        store = self.store
        d = store.open()
        d.addCallback(lambda _: gatherResults(
            [store.last_mid(), store.account_keys(), store.load_rooms()], consumeErrors=True))

        def loaded(results):
            self.last_mid, keys, rooms = results
            self.registered = set(keys)
            self.room_state = {r.key: r for r in rooms}
            self.log.info("store {store} ready: {accounts} accounts, {rooms} rooms, "
                          "last message id {mid}", store=store.description,
                          accounts=len(keys), rooms=len(rooms), mid=self.last_mid)
        d.addCallback(loaded)
        d.addErrback(lambda f: f.value.subFailure if hasattr(f.value, "subFailure") else f)
        return d

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
            d = succeed(None)
        else:
            self.log.info("waiting for {count} connections to close", count=len(self._closing))
            d = self._drained = Deferred()
            grace = self.clock.callLater(3.0, self._abort_closing)
            self._drained.addBoth(lambda r: grace.active() and grace.cancel() or r)
        if self.store is not None:
            # Writes in flight finish (and their data is on disk) before we exit.
            d.addBoth(lambda _: self.store.close())
            d.addErrback(lambda f: self.log.failure("closing the store failed", f))
        return d

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
        # Connection limits are counted from accept, by chatd.admission.
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

    def overflowed(self, session: Session | None, sink) -> None:
        """A client stopped reading past its send-queue cap: drop it without flushing."""
        self.log.warn("dropping {session}: send queue exceeded", session=session)
        if session is not None:
            self.drop(session, "send queue exceeded")
        sink.abort()

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
        if self._drained is not None and not self._closing:
            d, self._drained = self._drained, None
            d.callback(None)

    def _detach(self, session: Session, reason: str) -> None:
        session.attached = False
        self.sessions.discard(session)
        if self.accounts.get(session.account) is session:
            del self.accounts[session.account]
        for key, room in list(session.joining.items()):
            room.joining.pop(session, None)
            self._forget_if_empty(key, room)
        session.joining.clear()
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
                      nick=session.nick or "(no nick)", host=session.host, reason=reason)

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
        if key in self.registered and session.account != key:
            raise ChatError("nick_registered",
                            f"{nick} is registered; /login {nick} PASSWORD to use it")
        now = self.clock.seconds()
        if session.nick_at is not None and now - session.nick_at < self.limits.nick_interval:
            raise ChatError("nick_too_fast",
                            f"wait {self.limits.nick_interval:g} seconds between nick changes")
        session.nick_at = now
        self.rename(session, nick, key)
        if self.store is not None and key not in self.registered:
            # Another node sharing the database may have registered it since
            # we loaded the names: check, and hand it back if so.
            self.store.get_account(key).addCallbacks(
                self._registered_elsewhere, lambda f: None, callbackArgs=(session, key))
        return nick

    def _registered_elsewhere(self, account, session, key) -> None:
        if account is None:
            return
        self.registered.add(key)
        if session.attached and session.key == key and session.account != key:
            self.auth.evict_guest(session)

    def rename(self, session: Session, nick: str, key: str) -> str:
        """Give a session a nick nobody else holds, telling its rooms (no checks)."""
        now = self.clock.seconds()
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

    def join(self, session: Session, name: str, password: str | None = None,
             since: int | None = None):
        """Enter a room: the Room, or with a store a Deferred firing ``(room, more)``
        after the room's history (the last N messages, or those after ``since``)
        has been sent as history events."""
        self._require_nick(session)
        key = self.check_room(name)
        room = session.rooms.get(key)
        if room is not None and since is None:
            session.current = room
            return room if self.store is None else succeed((room, False))
        if room is None and key in session.joining:
            raise ChatError("already_joining", f"already joining {name}")
        if room is None and (len(session.rooms) + len(session.joining)
                             >= self.limits.max_rooms_per_session):
            raise ChatError("too_many_rooms",
                            f"you may be in at most {self.limits.max_rooms_per_session} rooms")
        if room is None:
            self.mod.check_entry(session, key, name, password)
            room = self.rooms.get(key)
            if room is None:
                room = self.rooms[key] = Room(name)
            self.mod.on_enter(session, room, key)
        if self.store is None:
            self._enter(session, room, key)
            return room
        # Everything stored up to last_mid comes from the store; anything
        # committed later is broadcast after this point and kept for us.
        upto = self.last_mid
        if since is not None:
            d = self.store.history(key, since=since, upto=upto, limit=MAX_PAGE + 1)
        else:
            d = self.store.history(key, upto=upto, limit=self.history_size)
        if key not in session.rooms:
            room.joining[session] = []
            session.joining[key] = room
        d.addCallbacks(lambda rows: (rows[:MAX_PAGE], len(rows) > MAX_PAGE),
                       self._history_unavailable, errbackArgs=(session,))
        d.addCallback(self._joined, session, room, key)
        return d

    def _history_unavailable(self, failure, session):
        # Chat works without scrollback: say so and join anyway.
        failure.trap(StoreUnavailable)
        session.send(Notice("history is unavailable right now (the store is down)"))
        return [], False

    def _joined(self, result, session, room, key):
        rows, more = result
        if key in session.rooms:  # "join since" while already in the room
            self._send_history(session, rows)
            return room, more
        kept = room.joining.pop(session, None)
        session.joining.pop(key, None)
        if kept is None or not session.attached:
            self._forget_if_empty(key, room)
            raise ChatError("not_in_room", f"you left {room.name} while joining")
        self._send_history(session, rows)
        for event in kept:
            session.send(event)
        if self.rooms.get(key) is not room:  # emptied and dropped while we waited
            self.rooms.setdefault(key, room)
        self._enter(session, room, key)
        return room, more

    def _send_history(self, session: Session, rows) -> None:
        for m in rows:
            session.send(Message(m.room, m.nick, m.text, m.mid, m.ts, m.kind, history=True))

    def _enter(self, session: Session, room: Room, key: str) -> None:
        room.add(session)
        session.rooms[key] = room
        session.current = room
        self.room_event(room, Join(room.name, session.nick, self.clock.seconds()))

    def room_event(self, room: Room, event) -> None:
        """Broadcast to the members, and keep it for those still receiving history."""
        room.broadcast(event)
        if room.joining:
            for kept in room.joining.values():
                kept.append(event)

    def history(self, session: Session, name: str, before: int | None = None,
                since: int | None = None, limit: int | None = None):
        """Send a page of a room's stored messages as history events; fires the ack data."""
        self._require_nick(session)
        room = self._member_room(session, name)
        if self.store is None:
            raise ChatError("store_unavailable", "this server keeps no history")
        limit = self.history_size if limit is None else limit
        if not 1 <= limit <= MAX_PAGE:
            raise ChatError("bad_request", f"limit is 1-{MAX_PAGE}")
        key = room.name.lower()
        d = self.store.history(key, before=before, since=since, upto=self.last_mid,
                               limit=limit + 1)

        def page(rows):
            more = len(rows) > limit
            rows = rows[:limit] if since is not None else rows[-limit:]
            self._send_history(session, rows)
            data = {"room": room.name, "count": len(rows), "more": more}
            if rows:
                data["first"], data["last"] = rows[0].mid, rows[-1].mid
            return data
        return d.addCallbacks(page, self.unavailable)

    @staticmethod
    def unavailable(failure):
        failure.trap(StoreUnavailable)
        if failure.check(StoreRejected):
            raise ChatError("store_unavailable",
                            "the store refused this message; nothing was saved")
        raise ChatError("store_unavailable",
                        "the message store is unavailable; nothing was saved, try again shortly")

    def part(self, session: Session, name: str | None, reason: str = "") -> Room:
        self._require_nick(session)
        room = self._member_room(session, name)
        self.room_event(room, Part(room.name, session.nick, clean_reason(reason),
                                   self.clock.seconds()))
        self._leave(session, room)
        return room

    def _leave(self, session: Session, room: Room) -> None:
        room.remove(session)
        room.guest_ops.discard(session)
        key = room.name.lower()
        session.rooms.pop(key, None)
        if session.current is room:
            session.current = next(reversed(session.rooms.values()), None)
        self._forget_if_empty(key, room)

    def _forget_if_empty(self, key: str, room: Room) -> None:
        if not room.members and not room.joining and self.rooms.get(key) is room:
            del self.rooms[key]

    def who(self, session: Session, name: str | None) -> Room:
        if name is None:
            return self._member_room(session, None)
        key = self.check_room(name)
        room = self.rooms.get(key)
        if room is None:
            state = self.room_state.get(key) if self.store is not None else None
            if state is None:
                raise ChatError("no_such_room", f"{name} does not exist")
            room = Room(state.name)  # a stored room nobody is in right now
        return room

    def room_list(self) -> list:
        """Every room that exists: those with people in them and the stored ones."""
        names = {} if self.store is None else {
            key: state.name for key, state in self.room_state.items()}
        names.update((key, room.name) for key, room in self.rooms.items())
        return [{"room": names[key],
                 "members": len(self.rooms[key].members) if key in self.rooms else 0}
                for key in sorted(names)]

    # -- messages --------------------------------------------------------------
    def check_text(self, text) -> str:
        if text is not None and not isinstance(text, str):
            raise ChatError("bad_request", "field 'text' must be a string")
        if not text or not text.strip():
            raise ChatError("empty_message", "nothing to send")
        if len(text) > self.limits.max_message:
            raise ChatError("message_too_long",
                            f"a message is at most {self.limits.max_message} characters")
        if CONTROL_RE.search(text):
            raise ChatError("invalid_text", "control characters are not allowed in messages")
        return text

    def say(self, session: Session, room_name: str | None, text, kind: str = "message"):
        """Send to a room: the Message, or with a store a Deferred firing it.

        With a store the message is broadcast, and the Deferred fires (so the
        sender is acknowledged), only after it is committed; commits happen in
        arrival order, so ids increase in broadcast order.  A store failure
        refuses the message: it is neither acknowledged nor delivered.
        """
        self._require_nick(session)
        room = self._member_room(session, room_name)
        text = self.check_text(text)
        ts = self.clock.seconds()
        if self.store is None:
            event = Message(room.name, session.nick, text, next(self._ids), ts, kind)
            room.broadcast(event)
            return event
        key, nick = room.name.lower(), session.nick
        d = self.store.append_message(key, room.name, nick, text, kind, ts)

        def stored(mid):
            event = Message(room.name, nick, text, mid, ts, kind)
            self.last_mid = mid
            # The room as it is now: the sender may have left, others joined.
            live = self.rooms.get(key)
            if live is not None:
                self.room_event(live, event)
            return event
        return d.addCallbacks(stored, self.unavailable)

    def private(self, session: Session, to, text):
        """A private message: delivered now if its target is online; for a
        registered nick that is offline, a Deferred firing once it is queued."""
        self._require_nick(session)
        if not isinstance(to, str) or not to:
            raise ChatError("missing_argument", "say who the message is for")
        key = self.check_nick(to)
        target = self.nicks.get(key) or self.accounts.get(key)
        if target is None:
            text = self.check_text(text)
            if self.store is not None and key in self.registered:
                return self.auth.queue_private(session, key, to, text)
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
