"""The chat service: the rules, and the one place front ends call.

It owns sessions and their lifecycle (connect, heartbeats, flood control,
close) and composes the owners of the rest of the chat state, each the only
writer of its piece:

* ``Nicks`` (chatd.nicks): which session holds which nick;
* presence (chatd.presence): with ``--redis``, the cluster-wide claim asked for
  before a nick is taken here, and who is in which room on the other nodes;
* ``Rooms`` (chatd.rooms): live rooms and who is in them;
* ``Accounts`` (chatd.accounts): registered names and who is logged in as what;
* ``RoomStates`` (chatd.roomstate): topics, operators, bans, modes, invites;
* the store: history, accounts, offline messages (always present: an
  in-memory one when nothing persists).

Every event for anyone other than the requesting session leaves through the
bus (chatd.bus), the one publish point.  Requests return a Deferred firing
their ack record (chatd.acks); every refusal is a ``ChatError``.
"""

import heapq
import itertools

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd import __version__, acks
from chatd.accounts import Accounts
from chatd.bus import LocalBus
from chatd.errors import ChatError
from chatd.events import Away, Hello, Join, Message, NickChange, Notice, Private, Quit
from chatd.limits import Limits
from chatd.logsummary import Summarised
from chatd.metrics import NO_METRICS
from chatd.moderation import Moderation
from chatd.nicks import Nicks
from chatd.notices import PresenceNotices
from chatd.operators import Operators
from chatd.presence import LocalPresence
from chatd.rooms import Rooms
from chatd.roomstate import RoomStates
from chatd.session import Session
from chatd.store import MAX_PAGE, StoreUnavailable
from chatd.throttle import LeakyCounts, address_key
from chatd.validate import check_room, check_text, clean_reason, loggable

# A rooms answer lists at most this many (a long list is asked for in pages), so
# one request can never produce an unbounded reply.
ROOMS_PAGE = 200
# A who answer names at most this many members (and says how many there are).
WHO_LISTED = 500


class RoomCreations:
    """New rooms per address per minute: reconnecting does not reset it."""

    def __init__(self, clock, limits):
        self.clock = clock
        self.limits = limits
        self.counts = LeakyCounts(clock, limits.new_rooms_per_minute, 60.0,
                                  limits.throttle_entries)

    def reconfigure(self, limits) -> None:
        self.limits = limits
        self.counts.retune(limits.new_rooms_per_minute, 60.0, limits.throttle_entries)

    def full(self, session) -> bool:
        return self.counts.full(address_key(session.host, self.limits.ipv6_prefix))

    def check(self, session) -> None:
        if self.full(session):
            raise self.refusal()
        self.counts.charge(address_key(session.host, self.limits.ipv6_prefix))

    @staticmethod
    def refusal() -> ChatError:
        return ChatError("too_many_new_rooms", "too many new rooms from your address; "
                         "join an existing one or try again in a minute")


def _memory_store():
    """Nothing persists: an in-memory store, open from the start (opening it is
    synchronous), so the service is usable before or without ``load``."""
    from chatd.store.memory import MemoryStore
    store = MemoryStore()
    store.open()
    return store


class ChatService(Service):
    log = Logger()

    def __init__(self, limits: Limits | None = None, clock=None, server_name: str = "chatd",
                 store=None, history: int = 50, passwords=None, bus=None, make_bus=None,
                 motd=(), operators=(), metrics=None, presence=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.limits = limits or Limits()
        self.clock = clock
        self.server_name = server_name
        self.store = store if store is not None else _memory_store()
        self.history_size = history
        self.motd = tuple(motd)  # lines sent as notices right after the hello
        # Account keys of the server operators (--operators; a reload updates it).
        self.operators = frozenset(name.lower() for name in operators)
        # The highest stored message id broadcast so far: a join reads history up
        # to it and is sent everything after it live.  (One writer per database;
        # a cluster fences with the store's order instead.)
        self.last_mid = 0
        self.metrics = metrics if metrics is not None else NO_METRICS
        self.metrics.watch_service(self)
        self.nicks = Nicks(self.limits.max_nick)
        self.rooms = Rooms(on_empty=self._room_emptied, metrics=self.metrics)
        # Who holds which nick and who is where on every node (chatd.presence):
        # asked before a nick is taken here; told each membership change.
        self.presence = presence if presence is not None else LocalPresence()
        if self.presence.clustered:
            self.rooms.on_members = self.presence.room_changed
        self.accounts = Accounts(self.store, clock, self.limits, passwords)
        self.room_states = RoomStates(self.store)
        self.sessions = set()
        self.bus = bus if bus is not None else LocalBus(self.rooms, self.nicks, self.metrics,
                                                              self.sessions)
        # Whether each stored message is told the id of its room's one before
        # (a cluster's bus orders by it).
        self._ordered = make_bus is not None
        if make_bus is not None:
            # A cluster's bus (chatd.redisbus), built around the local one.
            self.bus = make_bus(self, self.bus)
        # Join, part and quit notices: coalesced in a storm, none in a large room.
        self.notices = PresenceNotices(self.bus, clock, self.limits, self.rooms, self.metrics)
        self.mod = Moderation(self.room_states, self.rooms, self.nicks, self.bus, clock,
                              self.limits, notices=self.notices)
        self.presence.bind(self._presence_local, self._presence_lost, self._presence_conflict,
                           self._presence_back)
        on_state = getattr(self.bus, "on_state", None)  # a cluster's bus (chatd.redisbus)
        if on_state is not None:
            on_state("presence_back", self._others_back)
            # Room state (chatd.roomstate): each node's changes applied on the others.
            on_state("room_state", self._room_state_elsewhere)
            on_state("kick", self._kicked_here)  # a member here kicked on another node
            on_state("op", self._opped_here)  # ... or opped
            on_state("claimed", self._claimed_elsewhere)  # a login elsewhere takes its nick
            self.room_states.changed = lambda change: self.bus.publish_state("room_state",
                                                                             change)
        self.ops = Operators(self)
        self._private_ids = itertools.count(1)  # ids of live private messages
        self._claiming = {}  # nick key -> the session waiting for its cluster-wide claim
        self._creations = RoomCreations(clock, self.limits)
        self._closing = {}  # session -> None, dropped but not yet disconnected
        self._drained = None
        self._stopping = False
        self._heartbeat = LoopingCall(self.heartbeat)
        self._heartbeat.clock = clock
        # Sessions without a nick yet, oldest first: checked every second, so
        # --register-timeout holds to within a second whatever the heartbeat.
        self._unnamed = {}
        self._deadlines = LoopingCall(self.registration_deadlines)
        self._deadlines.clock = clock
        # Connect, login and close lines: counted instead in a storm (chatd.logsummary).
        self.chatter = Summarised(self.log, clock)

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
        store = self.store
        d = store.open()
        d.addCallback(lambda _: gatherResults(
            [store.last_mid(), store.account_keys(), store.load_rooms(),
             store.server_bans(self.clock.seconds())], consumeErrors=True))

        def loaded(results):
            self.last_mid, keys, rooms, bans = results
            self.accounts.loaded(keys)
            self.room_states.loaded(rooms)
            self.ops.loaded(bans)
            self.log.info("store {store} ready: {accounts} accounts, {rooms} rooms, "
                          "last message id {mid}", store=store.description,
                          accounts=len(keys), rooms=len(rooms), mid=self.last_mid)
        d.addCallback(loaded)
        d.addErrback(lambda f: f.value.subFailure if hasattr(f.value, "subFailure") else f)
        return d

    def startService(self):
        super().startService()
        self.accounts.start()
        self.presence.start()
        d = self._heartbeat.start(self.heartbeat_tick, now=False)
        d.addErrback(lambda f: self.log.failure("heartbeat loop stopped", f))
        d = self._deadlines.start(min(1.0, self.limits.register_timeout), now=False)
        d.addErrback(lambda f: self.log.failure("registration deadline loop stopped", f))

    def stopService(self):
        """Tell every client we are going, and fire once they are gone (or aborted)."""
        super().stopService()
        self._stopping = True
        for loop in (self._heartbeat, self._deadlines):
            if loop.running:
                loop.stop()
        for session in list(self.sessions):
            self.drop(session, "server shutting down")
        self.notices.stop()
        if not self._closing:
            d = succeed(None)
        else:
            self.log.info("waiting for {count} connections to close", count=len(self._closing))
            d = self._drained = Deferred()
            grace = self.clock.callLater(3.0, self._abort_closing)
            self._drained.addBoth(lambda r: grace.active() and grace.cancel() or r)
        # Everyone is gone: this node's claims and memberships go now, not at expiry.
        d.addBoth(lambda _: self.presence.stop())
        d.addBoth(lambda _: self.chatter.stop())  # the last counts, if any
        d.addBoth(lambda _: self.accounts.stop())
        # Writes in flight finish (and their data is on disk) before we exit.
        d.addBoth(lambda _: self.store.close())
        d.addErrback(lambda f: self.log.failure("closing the store failed", f))
        return d

    def _abort_closing(self):
        for session in list(self._closing):
            session.sink.abort()
            self.disconnected(session, "server shutting down")

    # -- connections -------------------------------------------------------
    def connect(self, sink, host: str) -> Session:
        """Admit a new connection or refuse it with a ChatError."""
        if self._stopping:
            raise ChatError("shutting_down", "the server is shutting down")
        # Connection limits are counted from accept, by chatd.admission.
        self.ops.check_connect(host)  # server bans on address ranges
        session = Session(sink, host, self.clock.seconds(), self.limits)
        self.chatter.info("session connected", "session connected from {peer}", peer=host,
                          session=id(session))
        self.sessions.add(session)
        self._unnamed[session] = None
        session.send(Hello(self.server_name, __version__, self.public_limits()))
        for line in self.motd:
            session.send(Notice(line))
        return session

    def reconfigure(self, limits: Limits | None = None, motd=None, operators=None) -> None:
        """New settings from a reload, for everyone who holds them; nobody is dropped.

        A changed rate or burst applies to sessions already connected too; the
        other limits are read where they are used, or when a connection opens
        (``--send-queue``, ``--max-line``).
        """
        if motd is not None:
            self.motd = tuple(motd)
        if operators is not None:
            self.operators = frozenset(name.lower() for name in operators)
        if limits is None or limits == self.limits:
            return
        old, self.limits = self.limits, limits
        self.nicks.max_nick = limits.max_nick
        self.mod.limits = limits
        self.notices.limits = limits
        self.accounts.reconfigure(limits)
        self._creations.reconfigure(limits)
        if (old.rate, old.burst) != (limits.rate, limits.burst):
            for session in self.sessions:
                session.bucket.rate = limits.rate
                session.bucket.capacity = limits.burst
                session.bucket.tokens = min(session.bucket.tokens, limits.burst)
        if self._heartbeat.running and self._heartbeat.interval != self.heartbeat_tick:
            self._heartbeat.stop()
            d = self._heartbeat.start(self.heartbeat_tick, now=False)
            d.addErrback(lambda f: self.log.failure("heartbeat loop stopped", f))

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
        """The transport is gone (called by the front end, exactly once, when it is)."""
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
        self._unnamed.pop(session, None)
        self.accounts.closed(session)
        rooms = list(session.rooms.values())
        self.rooms.leave_all(session)
        if session.key is not None:
            self.nicks.release(session)
            self.presence.release(session.key)
            gone = Quit(session.nick, clean_reason(reason), self.clock.seconds())
            keys = self.notices.quitting(rooms, session.key, gone)
            if keys:
                self.bus.publish_rooms(keys, gone)
        self.chatter.info("session closed", "session {nick} from {host} closed: {reason}",
                          nick=session.nick or "(no nick)", host=session.host,
                          reason=loggable(reason), peer=session.host, session=id(session))

    # -- input accounting --------------------------------------------------
    def admit(self, session: Session) -> None:
        """Count one request: proof of life, and the flood limit."""
        now = self.clock.seconds()
        session.last_seen = now
        if session.bucket.take(now):
            session.strikes = 0
            return
        session.strikes += 1
        self.metrics.flood_refused()
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
                    self.metrics.ping_timeout()
                    self.drop(session, "ping timeout")
                elif idle >= lim.ping_interval and now - session.pinged_at >= lim.ping_interval:
                    session.pinged_at = now
                    session.sink.send_ping()
            except Exception:
                # One broken session must not stop the heartbeat for the rest.
                self.log.failure("heartbeat failed for {session}", session=session)

    def registration_deadlines(self) -> None:
        """Drop the connections that have gone --register-timeout without a nick."""
        cutoff = self.clock.seconds() - self.limits.register_timeout
        for session in list(self._unnamed):
            if session.connected_at > cutoff:
                break  # oldest first: the rest are younger
            self.drop(session, "registration timeout")

    # -- nicks ---------------------------------------------------------------
    def _require_nick(self, session: Session) -> None:
        if session.key is None:
            raise ChatError("no_nick", "choose a nick first with /nick NAME")

    def set_nick(self, session: Session, nick):
        key = self.nicks.check(nick)
        if session.nick == nick:
            return succeed(acks.NickAck(nick))
        self.ops.check_nick(session, key)
        holder = self.nicks.get(key)
        if holder is not None and holder is not session:
            raise ChatError("nick_taken", f"{nick} is already taken")
        if self.accounts.is_registered(key) and session.account != key:
            raise ChatError("nick_registered",
                            f"{nick} is registered; /login {nick} PASSWORD to use it")
        lookalike = self.accounts.lookalike(key)
        if lookalike is not None and session.account != lookalike:
            raise ChatError("nick_lookalike",
                            f"{nick} looks too much like the registered nick {lookalike}")
        now = self.clock.seconds()
        if session.nick_at is not None and now - session.nick_at < self.limits.nick_interval:
            raise ChatError("nick_too_fast",
                            f"wait {self.limits.nick_interval:g} seconds between nick changes")
        if self._claiming.get(key, session) is not session:
            raise ChatError("nick_taken", f"{nick} is already taken")
        # The cluster-wide claim (chatd.presence; granted at once on one node).
        self._claiming[key] = session
        d = self.presence.claim(key, nick)
        d.addBoth(self._claimed, session, nick, key)
        return d

    def _claimed(self, result, session: Session, nick: str, key: str):
        if self._claiming.get(key) is session:
            del self._claiming[key]
        if isinstance(result, Failure):
            return result  # cluster_unavailable: nothing changed
        holder = self.nicks.get(key)
        if not result or (holder is not None and holder is not session):
            raise ChatError("nick_taken", f"{nick} is already taken")
        if not session.attached:
            if self.presence.clustered:
                self.presence.release(key)
            raise ChatError("not_connected", "the connection closed")
        self._rename(session, nick, key, self.clock.seconds(), claimed=True)
        if not self.accounts.is_registered(key):
            self.accounts.recheck(key).addCallbacks(
                self._registered_elsewhere, lambda f: f.trap(StoreUnavailable),
                callbackArgs=(session, key))
        return acks.NickAck(nick)

    def _registered_elsewhere(self, registered, session, key) -> None:
        if registered and session.attached and session.key == key and session.account != key:
            self._evict_guest(session)

    def _rename(self, session: Session, nick: str, key: str, now: float | None = None,
                claimed: bool = False) -> None:
        """Give a session a nick nobody else holds, telling its rooms (no checks).

        ``claimed``: the cluster-wide claim is already this node's (set_nick);
        otherwise (a guest name, a login's own nick) it is claimed now, and a
        conflict renames the holder again (``_presence_conflict``)."""
        old_key = session.key
        old = self.nicks.take(session, nick, key, now)
        if old_key is not None and old_key != key:
            self.presence.release(old_key)
        if not claimed:
            self.presence.assert_claim(key, nick)
        if old is None:
            self._unnamed.pop(session, None)
            return
        self.rooms.renamed(session, old_key)
        self.notices.renamed(session.rooms, old_key, nick, key)
        self.bus.publish_rooms(list(session.rooms), NickChange(old, nick, self.clock.seconds()),
                               also=session)

    def _evict_guest(self, holder: Session, why: str = "it belongs to an account") -> None:
        """Rename a session holding a registered nick it is not logged in as."""
        guest = self.accounts.guest_nick(self.nicks.__contains__)
        # Through the bus: the holder is someone else than the requester (or, in a
        # cluster, on another node).
        self.bus.publish_user(holder.key, Notice(f"{holder.nick} is a registered nick and "
                                                 f"{why}; you are now {guest}"))
        self._rename(holder, guest, guest.lower())

    # -- accounts ------------------------------------------------------------------
    def register(self, session: Session, password):
        self._require_nick(session)
        d = self.accounts.register(session, password)
        return d.addCallback(lambda nick: self.accounts.issue_token(nick.lower()).addCallback(
            lambda token: acks.AccountAck(nick, *token)))

    def login(self, session: Session, nick, password):
        if isinstance(nick, str):
            self.nicks.check(nick)
        d = self.accounts.verify(session, nick, password).addBoth(self.metrics.login_result)
        return d.addCallback(self._logged_in, session, "logged in")

    def resume(self, session: Session, nick, token):
        """``login`` with a resume token instead of the password (chatd.accounts)."""
        if isinstance(nick, str):
            self.nicks.check(nick)
        d = self.accounts.resume(session, nick, token).addBoth(self.metrics.login_result)
        return d.addCallback(lambda got: self._logged_in(got[0], session, "resumed", got[1]))

    def _logged_in(self, acct, session: Session, how: str, token=None):
        """``token``: the ``(token, expires)`` a resume kept already; else one is made."""
        self.ops.check_login(session, acct.key)
        self._claim(session, acct)
        self.chatter.info(how, "{nick} {how} from {host}", nick=acct.nick, how=how,
                          host=session.host)
        d = self._deliver_offline(session, acct.key)
        if token is not None:
            return d.addCallback(lambda n: acks.LoginAck(session.nick, n, *token))
        return d.addCallback(lambda n: self.accounts.issue_token(acct.key).addCallback(
            lambda token: acks.LoginAck(session.nick, n, *token)))

    def logout(self, session: Session):
        d = self.accounts.logout(session)
        if self.accounts.is_registered(session.key):  # its nick is the account's
            guest = self.accounts.guest_nick(self.nicks.__contains__)
            self._rename(session, guest, guest.lower())
        return d.addCallback(lambda _: acks.LogoutAck(session.nick))

    def _claim(self, session: Session, acct) -> None:
        """The owner takes its nick: an older login is closed, a guest holding it renamed."""
        key = acct.key
        other = self.accounts.session_of(key)
        if other is not None and other is not session:
            self.drop(other, "logged in from another connection")
        holder = self.nicks.get(key)
        if holder is not None and holder is not session:
            self._evict_guest(holder, "its owner has logged in")
        self.accounts.log_in(session, key)
        if session.key != key:
            # The owner's nick is the owner's on every node.
            self.presence.assert_claim(key, acct.nick, force=True)
            self._rename(session, acct.nick, key, claimed=True)
        # Whoever holds it on another node (an older login, a guest) gives it up there.
        self.bus.publish_user_state(key, "claimed", {"nick": key}).addErrback(
            self._claim_untold, key)

    def _claim_untold(self, failure, key: str) -> None:
        failure.trap(ChatError)  # cluster_unavailable: the resync settles it later
        self.log.warn("could not tell the other nodes that {key} logged in here: {error}",
                      key=key, error=failure.value.message)

    def _claimed_elsewhere(self, data) -> None:
        """An account's owner logged in on another node: its older login here is
        closed, a guest holding its nick here renamed (as ``_claim`` does here)."""
        holder = self.nicks.get(str(data.get("nick", "")))
        if holder is None:
            return
        if holder.account is not None and holder.account == holder.key:
            self.drop(holder, "logged in from another connection")
        else:
            self._evict_guest(holder, "its owner has logged in")

    def _deliver_offline(self, session: Session, key: str):
        def deliver(rows):
            if not rows or not session.attached:
                return 0
            for p in rows:
                # Addressed as the recipient is known now, not as the sender spelled it.
                session.send(Private(p.nick, session.nick, p.text, p.pid, p.ts, offline=True))
            self.accounts.forget_offline(key, rows[-1].pid)
            return len(rows)

        def failed(failure):
            failure.trap(StoreUnavailable)
            session.send(Notice("messages waiting for you could not be fetched now; "
                                "they stay queued for your next login"))
            return 0
        return self.accounts.pending_offline(key).addCallbacks(deliver, failed)

    def change_password(self, session: Session, old, new):
        key = session.account
        d = self.accounts.change_password(session, old, new)  # revokes the tokens
        return d.addCallback(lambda _: self.accounts.issue_token(key)).addCallback(
            lambda token: acks.AccountAck(session.nick, *token))

    # -- rooms ---------------------------------------------------------------
    def check_room(self, name) -> str:
        return check_room(name, self.limits.max_room)

    def member_room(self, session: Session, name: str | None):
        """The room ``name`` the session is in (None: its current room)."""
        self._require_nick(session)
        return self.rooms.member_room(session, None if name is None else self.check_room(name))

    def join(self, session: Session, name, password: str | None = None,
             since: int | None = None):
        """Enter a room; fires its JoinAck once the room's history (the last N
        messages, or those after ``since``) has been sent as history events."""
        return self._join(session, name, password, since, False)

    def _join(self, session, name, password, since, has_past: bool):
        """``has_past``: the store says the room has messages, so it is not a new one."""
        self._require_nick(session)
        key = self.check_room(name)
        room = session.rooms.get(key)
        if room is not None and since is None:
            self.rooms.switch(session, room)
            return self._join_ack(room, False)
        if room is None and key in session.joining:
            raise ChatError("already_joining", f"already joining {name}")
        if room is None and (len(session.rooms) + len(session.joining)
                             >= self.limits.max_rooms_per_session):
            raise ChatError("too_many_rooms",
                            f"you may be in at most {self.limits.max_rooms_per_session} rooms")
        if room is None:
            self.mod.check_entry(session, key, name, password)
            if (self.rooms.get(key) is None and self.room_states.get(key) is None
                    and not has_past):
                if self._creations.full(session):
                    # A room with stored messages is not new: everyone rejoining
                    # after a restart is not refused, however many rooms they had.
                    return self._had_messages(key).addCallback(
                        lambda _: self._join(session, name, password, since, True))
                self._creations.check(session)  # a new room: per-address rate
            room = self.rooms.open(key, name)
            self.mod.on_enter(session, room)
        # Everything stored up to last_mid comes from the store; anything
        # committed later is broadcast after this point and kept for us.
        upto = self.last_mid
        if since is not None:
            d = self.store.history(key, since=since, upto=upto, limit=MAX_PAGE + 1)
        else:
            d = self.store.history(key, upto=upto, limit=self.history_size)
        if key not in session.rooms:
            self.rooms.begin_join(session, room)
        d.addCallbacks(lambda rows: (rows[:MAX_PAGE], len(rows) > MAX_PAGE),
                       self._history_unavailable, errbackArgs=(session,))
        d.addCallback(self._joined, session, room)
        return d

    def _had_messages(self, key: str):
        """Fires if the room has stored messages; else fails with ``too_many_new_rooms``."""
        def judged(rows):
            if not rows:
                raise self._creations.refusal()

        def unknown(failure):
            failure.trap(StoreUnavailable)
            raise self._creations.refusal()
        return self.store.history(key, upto=self.last_mid, limit=1).addCallbacks(judged, unknown)

    def _history_unavailable(self, failure, session):
        # Chat works without scrollback: say so and join anyway.
        failure.trap(StoreUnavailable)
        session.send(Notice("history is unavailable right now (the store is down)"))
        return [], False

    def _joined(self, result, session, room):
        rows, more = result
        if room.key in session.rooms:  # "join since" while already in the room
            self._send_history(session, rows)
            return self._join_ack(room, more)
        kept = self.rooms.end_join(session, room)
        if kept is None:
            raise ChatError("not_in_room", f"you left {room.name} while joining")
        self._send_history(session, rows)
        # With several nodes a message can be committed below the fence and still
        # be on its way here when the history is read: shown once, as history.
        shown = {m.mid for m in rows}
        for event in kept:
            if not (shown and type(event) is Message and event.mid in shown):
                session.send(event)
        self.rooms.enter(session, room)
        self.notices.joined(room, session)
        return self._join_ack(room, more)

    def _join_ack(self, room, more: bool):
        """Fires the JoinAck: the members here, then those on the other nodes
        (chatd.presence; this node's alone while the cluster cannot be reached).
        In a large room only how many (O(1) per join; this node's count)."""
        state = self.room_states.get(room.key)
        topic = state.topic if state is not None and state.topic else None
        more = True if more else None
        if self.notices.is_large(len(room.members)):
            return succeed(acks.JoinAck(room.name, None, topic, more, len(room.members), True))
        here = room.nicks()
        if not self.presence.clustered:
            return succeed(acks.JoinAck(room.name, here, topic, more))

        def ack(there):
            seen = {n.lower() for n in here}
            return acks.JoinAck(room.name, here + [n for n in there if n.lower() not in seen],
                                topic, more)

        def here_only(failure):
            failure.trap(ChatError)
            if failure.value.code != "cluster_unavailable":
                return failure
            return []
        return self.presence.who(room.key).addErrback(here_only).addCallback(ack)

    @staticmethod
    def _send_history(session: Session, rows) -> None:
        for m in rows:
            session.send(Message(m.room, m.nick, m.text, m.mid, m.ts, m.kind, history=True))

    def history(self, session: Session, name: str | None, before: int | None = None,
                since: int | None = None, limit: int | None = None):
        """Send a page of a room's stored messages as history events; fires the ack."""
        room = self.member_room(session, name)
        if before is not None and since is not None:
            raise ChatError("bad_request", "ask for messages before an id or since one, not both")
        limit = self.history_size if limit is None else limit
        if not 1 <= limit <= MAX_PAGE:
            raise ChatError("bad_request", f"limit is 1-{MAX_PAGE}")
        d = self.store.history(room.key, before=before, since=since, upto=self.last_mid,
                               limit=limit + 1)

        def page(rows):
            more = len(rows) > limit
            rows = rows[:limit] if since is not None else rows[-limit:]
            self._send_history(session, rows)
            return acks.HistoryAck(room.name, len(rows), more,
                                   rows[0].mid if rows else None,
                                   rows[-1].mid if rows else None)
        return d.addCallback(page)

    def part(self, session: Session, name: str | None, reason: str = ""):
        room = self.member_room(session, name)
        self.notices.parting(room, session, clean_reason(reason))
        self.rooms.leave(session, room)
        return succeed(acks.RoomAck(room.name))

    def who(self, session: Session, name: str | None, after: str | None = None):
        """Who is in a room: all of a small one, in the order they came, on every
        node (chatd.presence); past WHO_LISTED members a page in nick order, the
        next one ``after`` its last (this node's members)."""
        if name is None:
            room = self.member_room(session, None)
            return self._who_in(session, room, after)
        key = self.check_room(name)
        room = self.rooms.get(key)
        state = self.room_states.get(key)
        if key not in session.rooms and state is not None and (
                state.invite_only or state.password):
            # Who is in a closed room is its members' business.
            raise ChatError("not_in_room", f"{state.name} is closed; only its members "
                            "see who is there")
        if room is not None:
            return self._who_in(session, room, after)
        if state is not None:  # a stored room nobody is in here
            return self._everyone(session, key, state.name, [])
        if not self.presence.clustered:
            raise ChatError("no_such_room", f"{name} does not exist")

        def elsewhere(there):  # a room only other nodes have people in
            if not there:
                raise ChatError("no_such_room", f"{name} does not exist")
            return acks.WhoAck(name, there)
        # While the cluster cannot be reached, whether it exists cannot be said:
        # cluster_unavailable, not a guess.
        return self.presence.who(key).addCallback(elsewhere)

    def _everyone(self, session: Session, key: str, name: str, here: list):
        """A WhoAck with this node's members and the other nodes'; while the cluster
        cannot be reached, this node's alone and a notice saying so."""
        def merged(there):
            seen = {n.lower() for n in here}
            return acks.WhoAck(name, here + [n for n in there if n.lower() not in seen])

        def partial(failure):
            failure.trap(ChatError)
            if failure.value.code != "cluster_unavailable":
                return failure
            session.send(Notice("the cluster cannot be reached right now: only the members "
                                "on this server are listed"))
            return acks.WhoAck(name, here)
        return self.presence.who(key).addCallbacks(merged, partial)

    def _who_in(self, session: Session, room, after: str | None):
        if self.presence.clustered and after is None and len(room.members) <= WHO_LISTED:
            return self._everyone(session, room.key, room.name, room.nicks())
        return succeed(self._who_ack(room, after))

    @staticmethod
    def _who_ack(room, after: str | None) -> acks.WhoAck:
        if after is None and len(room.members) <= WHO_LISTED:
            return acks.WhoAck(room.name, room.nicks())
        keys = room.members if after is None else [k for k in room.members
                                                   if k > after.lower()]
        # One page picked without sorting everyone (a large room).
        page = heapq.nsmallest(WHO_LISTED + 1, keys)
        return acks.WhoAck(room.name, [room.members[k].nick for k in page[:WHO_LISTED]],
                           len(room.members), True if len(page) > WHO_LISTED else None)

    def room_list(self, after: str | None = None):
        """The rooms that exist (those with people in them and the stored ones), by
        name, a page of at most ROOMS_PAGE after the room ``after``."""
        listing = {key: (name, 0) for key, name in self.room_states.names().items()}
        listing.update(self.rooms.names())

        def with_others(there):
            # The other nodes' rooms and members (chatd.presence), added to ours.
            for key, (name, count) in there.items():
                mine = listing.get(key)
                listing[key] = (name, count) if mine is None else (mine[0], mine[1] + count)
            keys = listing if after is None else [k for k in listing if k > after.lower()]
            # One page's worth picked without sorting every room.
            page = heapq.nsmallest(ROOMS_PAGE + 1, keys)
            return acks.RoomsAck([{"room": listing[key][0], "members": listing[key][1]}
                                  for key in page[:ROOMS_PAGE]],
                                 True if len(page) > ROOMS_PAGE else None)

        def here_only(failure):
            failure.trap(ChatError)
            if failure.value.code != "cluster_unavailable":
                return failure
            return {}  # the cluster is away: this node's rooms alone
        return self.presence.rooms().addErrback(here_only).addCallback(with_others)

    # -- messages --------------------------------------------------------------
    def say(self, session: Session, room_name: str | None, text, kind: str = "message"):
        """Send to a room.  The message is broadcast, and the sender acknowledged,
        only after it is committed; commits happen in arrival order, so ids
        increase in broadcast order.  A store failure refuses the message: it is
        neither acknowledged nor delivered."""
        room = self.member_room(session, room_name)
        text = check_text(text, self.limits.max_message)
        ts = self.clock.seconds()
        key, name, nick = room.key, room.name, session.nick
        ordered = self._ordered
        d = self.store.append_message(key, name, nick, text, kind, ts, with_prev=ordered)

        def stored(mid):
            # A cluster's bus delivers each room's messages in the chain of their
            # ``prev`` ids (chatd.redisbus); a single node needs none.
            mid, prev = mid if ordered else (mid, 0)
            # Never lowered: with several nodes a higher id may have come from
            # another one already (saw_mid).
            self.saw_mid(mid)
            # The room as it is now: the sender may have left, others joined.  A
            # wire format with ``echo = False`` (IRC without echo-message) does not
            # show senders their own messages: the room leaves the sender out.
            exclude = None if getattr(session.fmt, "echo", True) else session
            event = Message(name, nick, text, mid, ts, kind)
            if ordered:
                self.bus.publish_message(key, event, exclude, prev)
            else:
                self.bus.publish_room(key, event, exclude)
            return acks.MessageAck(name, mid, ts)
        return d.addCallback(stored)

    def private(self, session: Session, to, text):
        """A private message: delivered now if its target is online; for a
        registered nick that is offline, queued in the store for its next login."""
        self._require_nick(session)
        if not isinstance(to, str) or not to:
            raise ChatError("missing_argument", "say who the message is for")
        key = self.nicks.check(to)
        target = self.nicks.get(key) or self.accounts.session_of(key)
        text = check_text(text, self.limits.max_message)
        ts = self.clock.seconds()
        if target is None:
            return self._private_elsewhere(session, key, to, text, ts)
        mid = next(self._private_ids)
        event = Private(session.nick, target.nick, text, mid, ts)
        self.bus.publish_user(target.key, event)
        if target is not session:
            session.send(event)
        return succeed(acks.PrivateAck(target.nick, mid, ts))

    def _private_elsewhere(self, session: Session, key: str, to: str, text: str, ts: float):
        """Nobody here holds the nick: another node may (the bus asks; a single
        node's bus says no at once, a cluster's fails with cluster_unavailable when
        it cannot ask); nobody does: a registered nick's message waits in the store."""
        mid = next(self._private_ids)
        event = Private(session.nick, to, text, mid, ts)

        def sent(delivered):
            if delivered:
                session.send(event)
                return acks.PrivateAck(to, mid, ts)
            if not self.accounts.is_registered(key):
                raise ChatError("no_such_nick", f"{to} is not online")
            d = self.accounts.queue_private(session.nick, key, to, text, ts)
            return d.addCallback(lambda pid: acks.PrivateAck(to, pid, ts, True))
        return self.bus.publish_remote_user(key, event).addCallback(sent)

    def set_away(self, session: Session, text: str | None):
        """Mark the session away (``text``) or back (empty or None); everyone sharing
        a room with it is told (an IRC client with away-notify shows it)."""
        self._require_nick(session)
        text = clean_reason(text) or None
        if text != session.away:
            session.away = text
            self.bus.publish_rooms(list(session.rooms), Away(session.nick, text or "",
                                                             self.clock.seconds()))
        return succeed(acks.AwayAck(text is not None, text))

    # -- moderation: the caller must be in the room -------------------------------
    def topic(self, session, room_name, text=None):
        return self.mod.topic(session, self.member_room(session, room_name), text)

    def kick(self, session, room_name, nick, reason=""):
        room = self.member_room(session, room_name)
        try:
            d = self.mod.kick(session, room, nick, reason)
        except ChatError as e:
            if e.code != "no_such_nick" or not self.presence.clustered:
                raise
            d = self._kick_elsewhere(session, room, nick, reason)
        return d.addCallback(self._moderated, session, "kick", room, reason)

    def _kick_elsewhere(self, session, room, nick, reason):
        """The target is in the room on another node (chatd.presence): that node
        removes it and shows the kick to everyone (Moderation.kicked_elsewhere)."""
        return self._to_member_elsewhere(session, room, nick, "kick",
                                         {"reason": reason or ""}, acks.KickAck)

    def _to_member_elsewhere(self, session, room, nick, kind, data, ack):
        """Hand a room operator's ``kind`` (kick, op) on a member who is on another
        node (chatd.presence lists the room's members there) to that node."""
        key = self.nicks.check(nick)

        def handed(delivered, name):
            if not delivered:
                raise ChatError("no_such_nick", f"{nick} is not in {room.name}")
            return ack(room.name, name)

        def found(nicks):
            for name in nicks:
                if name.lower() == key:
                    change = {"room": room.key, "nick": key, "by": session.nick, **data}
                    return self.bus.publish_user_state(key, kind, change).addCallback(
                        handed, name)
            raise ChatError("no_such_nick", f"{nick} is not in {room.name}")
        return self.presence.who(room.key).addCallback(found)

    def _opped_here(self, data) -> None:
        """Another node's room operator opped (or deopped) a member who is here."""
        try:
            self.mod.opped_elsewhere(str(data["room"]), str(data["nick"]),
                                     str(data.get("by") or "an operator"), bool(data["grant"]))
        except (KeyError, TypeError) as e:
            self.log.warn("ignored a malformed op from another node: {error}", error=repr(e))

    def _kicked_here(self, data) -> None:
        """Another node's operator kicked a member who is on this node."""
        try:
            self.mod.kicked_elsewhere(str(data["room"]), str(data["nick"]),
                                      str(data.get("by") or "an operator"),
                                      str(data.get("reason") or ""))
        except (KeyError, TypeError) as e:
            self.log.warn("ignored a malformed kick from another node: {error}", error=repr(e))

    def ban(self, session, room_name, nick, banned=True):
        room = self.member_room(session, room_name)
        return self.mod.ban(session, room, nick, banned).addCallback(
            self._moderated, session, "ban" if banned else "unban", room)

    def _moderated(self, ack, session, action, room, reason=""):
        self.log.info("{nick} did {action} on {target} in {room}", nick=session.nick,
                      action=action, target=ack.nick, room=room.name, peer=session.host,
                      session=id(session), reason=loggable(reason))
        return ack

    def op(self, session, room_name, nick, grant=True):
        room = self.member_room(session, room_name)
        try:
            return self.mod.op(session, room, nick, grant)
        except ChatError as e:
            if e.code != "no_such_nick" or not self.presence.clustered:
                raise
            return self._to_member_elsewhere(session, room, nick, "op", {"grant": bool(grant)},
                                             acks.OpAck)

    def mode(self, session, room_name, invite_only=None, password=None):
        return self.mod.mode(session, self.member_room(session, room_name), invite_only,
                             password)

    def invite(self, session, room_name, nick):
        return self.mod.invite(session, self.member_room(session, room_name), nick)

    def keep(self, session, room_name):
        return self.mod.keep(session, self.member_room(session, room_name))

    def unkeep(self, session, room_name):
        return self.mod.unkeep(session, self.member_room(session, room_name))

    # -- server operators (chatd.operators) ----------------------------------------------
    def as_operator(self, session):
        """The operator tools, for a session logged in as a server operator; else
        ``not_server_operator``."""
        return self.ops.require(session)

    def _room_emptied(self, key: str) -> None:
        self.room_states.discard(key)
        self.notices.discard(key)

    # -- the cluster (chatd.presence calls these) ----------------------------------
    def _presence_local(self):
        """This node's nicks and memberships, for a resync."""
        nicks = {key: s.nick for key, s in self.nicks.items()}
        rooms = {key: (room.name, {k: s.nick for k, s in room.members.items()})
                 for key, room in self.rooms.items() if room.members}
        return nicks, rooms

    def _presence_lost(self, nick: str, room_keys) -> None:
        """A dead node's user: everyone sharing a room with it sees it quit."""
        self.bus.publish_rooms(room_keys, Quit(nick, "node stopped answering",
                                               self.clock.seconds()))

    def _presence_back(self) -> None:
        """This node was given up as dead (its users shown quitting on the others)
        and is back: the others show its users joining their rooms again."""
        publish = getattr(self.bus, "publish_state", None)
        if publish is None:
            return
        _nicks, rooms = self._presence_local()
        publish("presence_back", {"rooms": {key: [name, list(members.values())]
                                            for key, (name, members) in rooms.items()}})

    def _room_state_elsewhere(self, change) -> None:
        """Another node changed a room's state: the same here (and a ban kicks the
        members it matches on this node)."""
        try:
            self.room_states.apply_remote(change)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            self.log.warn("ignored a malformed room change from another node: {error}",
                          error=repr(e))
            return
        if change.get("change") == "entry" and change.get("list") == "bans" and change.get(
                "present"):
            self.mod.banned_elsewhere(str(change["key"]), str(change["entry"]),
                                      str(change.get("by") or "an operator"))

    def _others_back(self, data) -> None:
        """Another node is back after being given up: its users join again here."""
        now = self.clock.seconds()
        try:
            rooms = [(str(k), str(v[0]), [str(n) for n in v[1]])
                     for k, v in dict(data["rooms"]).items()]
        except (KeyError, TypeError, ValueError, IndexError):
            self.log.warn("presence: a malformed presence_back from another node")
            return
        for key, name, nicks in rooms:
            if self.rooms.get(key) is None:
                continue  # nobody here to tell
            for nick in nicks:
                self.rooms.deliver(key, Join(name, nick, now))

    def _presence_conflict(self, key: str) -> None:
        """Another node holds a nick a session here has: the session here is renamed."""
        holder = self.nicks.get(key)
        if holder is None:
            return
        guest = self.accounts.guest_nick(self.nicks.__contains__)
        self.bus.publish_user(holder.key, Notice(
            f"{holder.nick} is held on another node (taken while this one could not "
            f"reach the cluster); you are now {guest}"))
        self._rename(holder, guest, guest.lower())

    def saw_mid(self, mid: int) -> None:
        """A room message id delivered here from another node (chatd.redisbus): a
        join's history then reaches up to it, and nothing falls between."""
        if mid > self.last_mid:
            self.last_mid = mid

    # -- how a session is reached -------------------------------------------------
    def set_format(self, session: Session, fmt) -> None:
        """Switch a session's wire format (the line protocol's JSON mode)."""
        self.rooms.set_format(session, fmt)
