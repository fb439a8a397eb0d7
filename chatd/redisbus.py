"""The clustered bus: ``IBus`` (chatd.bus) in front of the local one, joined
to the other nodes through Redis pub/sub (chatd.redislink).

Each event is delivered locally at once and published ONCE, never once per
recipient:

* ``room:<room key>``: a room's events; a node subscribes while the room is
  live here (someone in it or joining it: ``Rooms.observe``);
* ``user:<nick key>``: a private message or an invite; a node subscribes
  while it holds the nick (``Nicks.observe``);
* a nick change, a quit or an away that concerns several rooms goes, with the
  list of them, on each of those rooms' ``room:`` channels in one script call
  (``RedisLink.publish_many``), so only nodes with someone in one of them
  receive it.  A node subscribed to several of them receives it once per
  channel: the first copy is delivered once to each local session sharing any
  of the rooms, and the others are dropped by their sequence number (below);
* ``all``: a server operator's notice, to every session;
* ``state``: a change other nodes must apply to their own state (not only
  show): handed to whoever registered for its kind (``on_state``), which
  applies it through its own API.

The envelope is compact JSON: ``{"n": sender, "q": sequence number, "t": event
class, "v": [its fields in order], ...routing}``; the sender is the node id and
a token of this process.  A node ignores its own messages (it has delivered
them already), and any whose sequence number is not above the last it had from
that sender: a publish in flight when the link died may have reached Redis, and
is sent again (at least once; shown once).  On receipt the event is rebuilt (chatd.events) and
delivered through the same encode-once local path as a local event.

Catching up: a room's subscription takes a round trip; messages other nodes
publish before it is confirmed, or while the link is down, are read back from
the store (``recover``) after the last id this node had, and each is shown
once whichever way it comes.  Other room events in that round trip (a join, a
nick change, a quit) are not stored, so not read back.

Order: one node publishes on one connection and receives on one, and Redis
keeps a connection's order, so every receiver sees one sender's events in the
order they were published.  Two nodes' messages to one room may still cross on
the way (6 here before 5), so each room message carries ``prev``, the id of the
room's message before it (read in its commit, under the room's lock), and a
node delivers a room's messages in that chain: one whose ``prev`` was not
delivered here waits (``_waiting``, at most ``ORDER_BUFFER`` per room) until it
has been, or, after ``order_wait`` seconds, the gap is read back from the store
like any catching up.  A client shown 6 has been shown 5, so resuming "since 6"
on any node misses nothing.

While the link is down, local delivery goes on; what could not be published
waits in a bounded outbox and goes out, in order, when the link is back.  Room
messages other nodes committed meanwhile are read back from the store on
reconnect (``recover``) for the rooms that were live here, so nothing
acknowledged is missed.  ``publish_remote_user`` fails with ``cluster_unavailable``
meanwhile.
"""

import itertools
import json
import secrets
from collections import deque
from dataclasses import fields, is_dataclass

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from zope.interface import implementer

from chatd import events
from chatd.bus import IBus
from chatd.errors import ChatError
from chatd.metrics import NO_METRICS
from chatd.redislink import RedisError, RedisUnavailable
from chatd.store import StoreUnavailable


def cluster_unavailable():
    return ChatError("cluster_unavailable", "the other servers of this chat cannot be "
                     "reached right now; try again in a moment")


# Events waiting for the link to come back; past it the oldest are dropped
# (and logged): room messages among them are still recovered from the store.
OUTBOX = 10_000

# How long a room message waits here for the one before it (sent by another
# node, still on its way) before the gap is read back from the store, seconds.
ORDER_WAIT = 0.5
# Room messages waiting for the one before them, per room; past it the gap is
# read back at once (and what did not fit comes with it: it is stored).
ORDER_BUFFER = 1_000

_CLASSES = {cls.__name__: cls for cls in vars(events).values()
            if isinstance(cls, type) and is_dataclass(cls)}
_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in _CLASSES.values()}


def encode_event(event) -> tuple:
    cls = type(event)
    return cls.__name__, [getattr(event, name) for name in _FIELDS[cls]]


def decode_event(name: str, values):
    cls = _CLASSES[name]
    return cls(*values)


@implementer(IBus)
class RedisBus:
    log = Logger()

    def __init__(self, link, local, rooms, nicks, sessions, metrics=NO_METRICS,
                 recover=None, last_mid=None, note_mid=None, outbox: int = OUTBOX,
                 order_wait: float = ORDER_WAIT, order_buffer: int = ORDER_BUFFER,
                 clock=None):
        """``local``: the LocalBus; ``recover(room_key, since_mid)`` -> Deferred of
        the room's stored messages after ``since_mid`` (the service's store);
        ``last_mid()``: the highest message id this node knows of; ``note_mid(mid)``
        is told each message id delivered here from elsewhere, so that a join's
        history reaches up to it.  ``order_wait``/``order_buffer``: how long and
        how many of a room's messages wait for the one before them (``clock``:
        the link's reactor unless given)."""
        self.link = link
        self.local = local
        self.rooms = rooms
        self.nicks = nicks
        self.sessions = sessions
        self.metrics = metrics
        self.recover = recover
        self.last_mid = last_mid
        self.note_mid = note_mid
        # The node id and this process's start: a node started again is new.
        self.node = f"{link.node_id}/{secrets.token_hex(4)}"
        # How every envelope of ours begins (_payload).
        self._own = b'{"n":' + json.dumps(self.node).encode("utf-8") + b","
        self._seq = itertools.count(1)  # every message this process publishes, in order
        self._last = {}  # sender -> highest sequence number received from it
        self._outbox = deque(maxlen=outbox)  # (seq, channel, payload)
        self._dropped = 0  # held events dropped, the outbox being full, this outage
        self._state_handlers = {}  # kind -> callable(data: dict)
        # room key -> highest message id delivered here (or known when it opened)
        self._seen = {}
        # room key -> [id to read back after, ids delivered meanwhile]: a room
        # catching up (from its opening until its subscription is confirmed,
        # and from an outage until the link is back), then read back from the
        # store after that id (``_catch_up``), so nothing falls in between
        self._catching = {}
        # room key -> ids read back that may still arrive live (shown once)
        self._recovered = {}
        # room key -> live (event, prev) received while its read-back is in flight: shown
        # after it, so that each sender's messages stay in order
        self._reading = {}
        # room key -> {prev: (event, exclude, remote)}: messages whose ``prev`` has not
        # been delivered here yet, and the timer that reads the gap back
        self._waiting = {}
        self._gap_timers = {}
        self.order_wait = order_wait
        self.order_buffer = order_buffer
        if clock is None:
            clock = getattr(link, "reactor", None)
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self._waits_dropped = 0  # messages not kept, the buffer being full (logged once)
        self._read_again = set()  # room keys to read back again after the one under way
        rooms.observe(on_open=self._room_opened, on_close=self._room_closed)
        nicks.observe(on_take=self._nick_taken, on_release=self._nick_released)
        link.subscribe("all", self._received)
        link.subscribe("state", self._received)
        link.add_listener(on_up=self._link_up, on_down=self._link_down)

    # -- subscriptions follow what is here --------------------------------------
    def _room_opened(self, key: str) -> None:
        # Older messages reach the joiner as history (up to the node's last id);
        # newer ones published before the subscription took are read back.
        since = self.last_mid() if self.last_mid is not None else 0
        self._seen[key] = since
        self._catching[key] = [since, set()]
        self.link.subscribe("room:" + key, self._received,
                            on_ready=lambda: self._catch_up(key))

    def _room_closed(self, key: str) -> None:
        self.link.unsubscribe("room:" + key)
        self._seen.pop(key, None)
        self._catching.pop(key, None)
        self._recovered.pop(key, None)
        self._reading.pop(key, None)
        self._waiting.pop(key, None)
        self._read_again.discard(key)
        self._cancel_gap(key)

    def _nick_taken(self, key: str) -> None:
        self.link.subscribe("user:" + key, self._received)

    def _nick_released(self, key: str) -> None:
        self.link.unsubscribe("user:" + key)

    # -- IBus ------------------------------------------------------------------
    def publish_room(self, room_key, event, exclude=None) -> None:
        self.rooms.deliver(room_key, event, exclude)
        if type(event) is events.Message:
            self._saw(room_key, event.mid)
        self._publish("room:" + room_key, event, {"r": room_key})

    def publish_message(self, room_key, event, exclude, prev) -> None:
        # Published at once, with its ``prev``; shown here after the room's
        # message before it (from another node, perhaps still on its way).
        self._show(room_key, event, exclude, prev)
        self._publish("room:" + room_key, event, {"r": room_key, "p": prev})

    def publish_rooms(self, room_keys, event, also=None) -> None:
        self.rooms.deliver_many(room_keys, event, also)
        keys = list(room_keys)
        if keys:
            # On each room's channel (one call): nodes with nobody in these rooms
            # receive nothing; one sequence number, so a node has it once.
            channels = tuple("room:" + key for key in keys)
            self._publish(channels if len(channels) > 1 else channels[0], event,
                          {"r": keys, "x": also.key if also is not None else None})

    def publish_user(self, nick_key, event) -> None:
        """To a local holder, else to whichever node holds it (nobody: dropped)."""
        if self.nicks.get(nick_key) is not None:
            self.local.publish_user(nick_key, event)
        else:
            self._publish("user:" + nick_key, event, {"u": nick_key})

    def publish_remote_user(self, nick_key, event) -> Deferred:
        """To whichever node holds the nick: fires True if one does, False if
        none; fails with ``cluster_unavailable`` while the link is down (whether
        the person is online cannot be known: better said than guessed)."""
        if not self.link.up:
            return fail(cluster_unavailable())
        d = self.link.publish("user:" + nick_key,
                              self._envelope(event, {"u": nick_key}, next(self._seq)))
        return d.addCallbacks(lambda receivers: bool(receivers), self._unreachable)

    @staticmethod
    def _unreachable(failure):
        failure.trap(RedisUnavailable, RedisError)
        raise cluster_unavailable()

    def publish_all(self, event) -> None:
        self.local.publish_all(event)
        self._publish("all", event, {})

    # -- state changes other nodes apply ------------------------------------------
    def on_state(self, kind: str, handler) -> None:
        """``handler(data)`` for each ``publish_state(kind, data)`` of another node."""
        self._state_handlers[kind] = handler

    def publish_user_state(self, nick_key: str, kind: str, data: dict) -> Deferred:
        """A change for whichever node holds the nick to apply (a kill, a kick of
        someone on another node): fires True if a node holds it, False if none;
        ``cluster_unavailable`` while the link is down."""
        if not self.link.up:
            return fail(cluster_unavailable())
        seq = next(self._seq)
        payload = self._payload(seq, {"s": kind, "d": data})
        d = self.link.publish("user:" + nick_key, payload)
        return d.addCallbacks(lambda receivers: bool(receivers), self._unreachable)

    def publish_state(self, kind: str, data: dict) -> None:
        seq = next(self._seq)
        self._send(seq, "state", self._payload(seq, {"s": kind, "d": data}))

    # -- out ---------------------------------------------------------------------
    def _envelope(self, event, routing: dict, seq: int) -> bytes:
        name, values = encode_event(event)
        routing["t"] = name
        routing["v"] = values
        return self._payload(seq, routing)

    def _payload(self, seq: int, fields: dict) -> bytes:
        """Every envelope this node publishes.  The sender first, so that each node
        drops its own (Redis hands them back to it on every channel it shares)
        by a prefix test, ``_own``, instead of parsing them (_received)."""
        envelope = {"n": self.node, "q": seq}
        envelope.update(fields)
        return json.dumps(envelope, separators=(",", ":")).encode("utf-8")

    def _publish(self, channel, event, routing: dict) -> None:
        seq = next(self._seq)
        self._send(seq, channel, self._envelope(event, routing, seq))

    def _send(self, seq: int, channel, payload: bytes) -> None:
        """``channel``: a name, or a tuple of names (the same payload on each)."""
        if not self.link.up or self._outbox:
            self._hold(seq, channel, payload)
            return
        self._out(seq, channel, payload)

    def _out(self, seq: int, channel, payload: bytes) -> None:
        if isinstance(channel, tuple):
            d = self.link.publish_many(channel, payload)
        else:
            d = self.link.publish(channel, payload)
        d.addErrback(self._unsent, seq, channel, payload)

    def _hold(self, seq: int, channel, payload: bytes) -> None:
        if len(self._outbox) == self._outbox.maxlen:
            self._dropped += 1
            if self._dropped == 1:  # once per outage, not once per event
                self.log.warn("Redis outbox full ({size}): the oldest events are dropped "
                              "until the link is back", size=self._outbox.maxlen)
        self._outbox.append((seq, channel, payload))

    def _unsent(self, failure, seq, channel, payload) -> None:
        # Perhaps it reached Redis before the link died, perhaps not: it goes
        # again, and a receiver that had it already drops it (its sequence number).
        if failure.trap(RedisUnavailable, RedisError) is RedisError:
            # Redis is up and refused it (out of memory, say): sending it again
            # would be refused again.
            self.log.warn("Redis refused a publish on {channel}: {error}", channel=channel,
                          error=failure.getErrorMessage())
            return
        self._hold(seq, channel, payload)

    # -- in ----------------------------------------------------------------------
    def _received(self, data: bytes) -> None:
        if data.startswith(self._own):
            return  # our own (_payload), delivered here when it was published
        msg = json.loads(data)
        sender = msg.get("n")
        seq = msg.get("q", 0)
        if seq <= self._last.get(sender, 0):
            # sent again after an outage, and had already come; or an event of
            # several rooms, had already on another of their channels
            return
        self._last[sender] = seq
        self.metrics.redis_received()
        kind = msg.get("s")
        if kind is not None:
            handler = self._state_handlers.get(kind)
            if handler is not None:
                handler(msg["d"])
            return
        event = decode_event(msg["t"], msg["v"])
        if "u" in msg:
            self.local.publish_user(msg["u"], event)
        elif "r" not in msg:
            self.local.publish_all(event)
        elif isinstance(msg["r"], list):
            self._deliver_many(msg["r"], event, msg.get("x"))
        else:
            key = msg["r"]
            held = self._reading.get(key)
            if held is not None:
                # after what is being read back, which is older
                held.append((event, msg.get("p", 0)))
            else:
                self._deliver_room(key, event, msg.get("p", 0))

    def _deliver_room(self, key: str, event, prev: int = 0) -> None:
        """Another node's room event, here (``prev``: a message's predecessor
        in its room; 0 when not known)."""
        if type(event) is events.Message:
            recovered = self._recovered.get(key)
            if recovered and event.mid in recovered:
                recovered.discard(event.mid)
                return  # read back from the store after an outage already
            self._show(key, event, None, prev, True)
            return
        self.rooms.deliver(key, event)

    # -- a room's messages in the order of their chain ----------------------------------
    def _show(self, key: str, event, exclude, prev: int, remote: bool = False) -> None:
        """Deliver a room message here now if the one before it (``prev``) has
        been (or is older than what this node knew when the room opened here),
        else keep it until then."""
        if prev > self._seen.get(key, 0) and self.rooms.get(key) is not None:
            self._wait(key, event, exclude, prev, remote)
            return
        self._deliver_message(key, event, exclude, remote)
        if self._waiting.get(key):
            self._release(key)

    def _deliver_message(self, key: str, event, exclude, remote: bool) -> None:
        self._saw(key, event.mid)
        if remote and self.note_mid is not None:
            self.note_mid(event.mid)
        self.rooms.deliver(key, event, exclude)

    def _wait(self, key: str, event, exclude, prev: int, remote: bool) -> None:
        waiting = self._waiting.setdefault(key, {})
        if len(waiting) >= self.order_buffer:
            # Full: this one is stored, and the read-back brings it.
            self._waits_dropped += 1
            if self._waits_dropped == 1:
                self.log.warn("room {room}: {size} messages wait for an earlier one; reading "
                              "the gap back from the store now", room=key, size=len(waiting))
            self._cancel_gap(key)
            if key in self._catching:
                # A read-back already under way may have read before this one's
                # commit: another follows it.
                self._read_again.add(key)
            self._read_gap(key)
            return
        waiting[prev] = (event, exclude, remote)
        if key not in self._gap_timers:
            self._gap_timers[key] = self.clock.callLater(self.order_wait, self._gap, key)

    def _release(self, key: str, force: bool = False) -> None:
        """Deliver, in order, the waiting messages whose predecessor is now
        delivered here (``force``: all of them, gap or not: given up on it)."""
        waiting = self._waiting.get(key)
        while waiting:
            prev = min(waiting)  # the chain's ids increase: the earliest waiting
            if prev > self._seen.get(key, 0) and not force:
                break
            event, exclude, remote = waiting.pop(prev)
            recovered = self._recovered.get(key)
            if recovered and event.mid in recovered:
                recovered.discard(event.mid)
                continue  # read back with the gap
            self._deliver_message(key, event, exclude, remote)
        if not waiting:
            self._waiting.pop(key, None)
            self._cancel_gap(key)
            self._waits_dropped = 0
        elif key not in self._gap_timers:
            self._gap_timers[key] = self.clock.callLater(self.order_wait, self._gap, key)

    def _gap(self, key: str) -> None:
        """The one before a waiting message has not come: read the gap back."""
        self._gap_timers.pop(key, None)
        if not self._waiting.get(key):
            return
        self.log.info("room {room}: a message sent elsewhere did not arrive within "
                      "{wait}s; reading it back from the store", room=key, wait=self.order_wait)
        self._read_gap(key)

    def _read_gap(self, key: str) -> None:
        if key in self._catching:
            return  # a read-back is due already (opening, outage): released after it
        self._catching[key] = [self._seen.get(key, 0), set()]
        self._catch_up(key)

    def _cancel_gap(self, key: str) -> None:
        timer = self._gap_timers.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _deliver_many(self, keys, event, excluded_key) -> None:
        """Once to each local session sharing any of the rooms; the session the
        event is about is on another node, so nobody here is left out but a
        session that has since taken the same nick here."""
        audience = {}
        for key in keys:
            room = self.rooms.get(key)
            if room is not None:
                audience.update(dict.fromkeys(room.members.values()))
        if excluded_key is not None:
            holder = self.nicks.get(excluded_key)
            audience.pop(holder, None)
        if audience:
            self.rooms.deliver_to(audience, event)

    # -- outages and catching up ------------------------------------------------------
    def _saw(self, key: str, mid: int) -> None:
        if mid > self._seen.get(key, 0):
            self._seen[key] = mid
        catching = self._catching.get(key)
        if catching is not None:
            catching[1].add(mid)

    def _link_down(self) -> None:
        # Room by room, the last message id seen before the outage: what other
        # nodes commit after it is read back from the store when the link is back.
        for key, _ in self.rooms.items():
            self._catching.setdefault(key, [self._seen.get(key, 0), set()])
        self._recovered = {}
        # Messages waiting for an earlier one wait for that read-back instead.
        for key in list(self._gap_timers):
            self._cancel_gap(key)
        # Read-backs in flight are moot: they run again when the link is back.
        for key in list(self._reading):
            for event, prev in self._reading.pop(key):
                self._deliver_room(key, event, prev)

    def _link_up(self) -> None:
        outbox, self._outbox = self._outbox, deque(maxlen=self._outbox.maxlen)
        if outbox:
            self.log.info("Redis link back: publishing {count} held events ({dropped} "
                          "dropped)", count=len(outbox), dropped=self._dropped)
        self._dropped = 0
        # In the order first published (a failed publish may come back after
        # later ones were held).
        for seq, channel, payload in sorted(outbox, key=lambda held: held[0]):
            self._out(seq, channel, payload)
        for key in list(self._catching):
            self._catch_up(key)

    def _catch_up(self, key: str) -> None:
        """Deliver the room's stored messages after the catching-up id that were
        not delivered here (sent while unsubscribed); then stop catching up."""
        catching = self._catching.get(key)
        if catching is None or not self.link.up:
            return  # (down: tried again when the link is back)
        if self.recover is None:
            del self._catching[key]
            return
        since, delivered = catching
        self._reading.setdefault(key, [])

        def release() -> None:
            for event, prev in self._reading.pop(key, ()):
                self._deliver_room(key, event, prev)

        def deliver(rows):
            got = 0
            for m in rows:
                if m.mid in delivered or self.rooms.get(key) is None:
                    continue
                delivered.add(m.mid)
                self._recovered.setdefault(key, set()).add(m.mid)
                self._saw(key, m.mid)
                if self.note_mid is not None:
                    self.note_mid(m.mid)
                self.rooms.deliver(key, events.Message(m.room, m.nick, m.text, m.mid, m.ts,
                                                       m.kind))
                got += 1
            if got:
                self.log.info("read back {count} messages of {room} that had not arrived "
                              "here (not subscribed yet, an outage, or a gap)", count=got,
                              room=key)
            if self._catching.get(key) is catching and self.link.up:
                del self._catching[key]
            release()
            self._release(key)
            if key in self._read_again and key not in self._catching:
                self._read_again.discard(key)
                self._read_gap(key)

        def failed(failure):
            # Given up (the ids noted meanwhile would grow without end): a message
            # in the gap is still in the store, for a client's ``since``.
            if self._catching.get(key) is catching:
                del self._catching[key]
            release()
            # Nor do messages after the gap wait for it any longer.
            self._release(key, force=True)
            if failure.check(StoreUnavailable):
                self.log.warn("cannot read back {room} from the store now ({error}): "
                              "messages sent elsewhere while this node was not subscribed "
                              "may be missing here", room=key, error=failure.getErrorMessage())
            else:
                self.log.failure("reading back {room} from the store failed", failure, room=key)
        d = self.recover(key, since)
        d.addCallback(deliver)
        d.addErrback(failed)
