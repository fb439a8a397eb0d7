"""What the daemon counts, in the Prometheus text format.

One :class:`Metrics` per daemon holds its own ``CollectorRegistry`` (never
the process-global default, so two daemons in one test process, or a library
importing chatd, do not share counters).  ``tap.py`` makes it and hands it to
the owners; each owner calls one named method at the one place its event
happens.  Whoever is given nothing gets :data:`NO_METRICS`, whose methods do
nothing, so unit tests and other callers need no set-up.

Labels are bounded: a front end (``line``, ``websocket``), an error code from
the fixed :data:`ERROR_CODES` (anything else is ``other``).  Never a nick, a
room or an address: one series per person would grow without end.

The hot path pays once per broadcast, not once per recipient: deliveries are
counted as the size of each wire format's outlet (see ``Rooms.deliver``).
"""

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    exposition,
    generate_latest,
)
from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd import wire
from chatd.errors import ChatError

# The classic text format (what generate_latest writes for our plain names);
# newer clients call their default "1.0.0", which older Prometheus servers refuse.
CONTENT_TYPE = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", exposition.CONTENT_TYPE_LATEST)

FRONT_ENDS = ("line", "websocket", "irc")

# Which front end a wire format belongs to (the line protocol has two).
_FRONT_END_OF = {wire.TEXT: "line", wire.JSONL: "line", wire.WEBSOCKET: "websocket",
                 wire.PROTOBUF: "websocket"}

# Every code a client can be sent (docs/protocol.rst); tests/test_metrics.py
# checks that chatd/ raises no other.  Anything else counts as "other".
ERROR_CODES = frozenset("""
already_joining already_kept already_logged_in already_registered bad_password
bad_request bad_room_password banned banned_from_server binary_frame busy cluster_unavailable
no_such_ban
not_server_operator empty_message flood internal
invalid_json invalid_nick invalid_room invalid_text invite_only line_too_long
login_failed login_throttled message_too_long missing_argument nick_lookalike
nick_registered nick_taken nick_too_fast no_nick no_such_nick no_such_room
not_connected not_in_room not_kept not_logged_in not_operator recipient_busy
register_throttled resume_refused shutting_down store_unavailable too_many_connections
too_many_from_ip too_many_kept too_many_new_rooms too_many_rooms unknown_command
unknown_type invalid_protobuf text_frame invalid_utf8
""".split())

# Fan-out of one event to a room: microseconds for a few members, a few
# milliseconds for thousands.
FANOUT_BUCKETS = (.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005,
                  .01, .025, .05, .1, float("inf"))
# A store operation: a fsync is milliseconds; --store-timeout is 10 s by default.
STORE_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10,
                 float("inf"))
# How late the reactor runs a timer: anything past 100 ms is felt by people.
LAG_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, float("inf"))

LAG_INTERVAL = 1.0
# How a room heard of a join, part or quit (chatd.notices).
PRESENCE_HOW = ("at_once", "gathered", "unannounced")


class NoMetrics:
    """Counts nothing: the default wherever no :class:`Metrics` is given."""

    registry = None

    def watch_service(self, service): pass
    def add_format(self, fmt, front_end): pass
    def connection_opened(self, front_end): pass
    def connection_closed(self, front_end): pass
    def message_received(self, fmt): pass
    def broadcast(self, outlets, exclude, seconds): pass
    def delivered_by_format(self, counts): pass
    def undelivered(self): pass
    def send_queue_overflow(self): pass
    def ping_timeout(self): pass
    def flood_refused(self): pass
    def error(self, code): pass
    def reactor_lag(self, seconds): pass
    def redis_published(self): pass
    def redis_state(self, up): pass
    def redis_received(self): pass
    def presence(self, how): pass
    def watch_pacer(self, pacer): pass
    def paced(self): pass

    def login_result(self, result):
        return result

    def store_operation(self, result, started):
        return result


NO_METRICS = NoMetrics()


class Metrics(NoMetrics):
    """The daemon's counters, gauges and histograms in one registry."""

    def __init__(self, clock=None, registry: CollectorRegistry | None = None,
                 process: bool = True):
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.registry = r = registry if registry is not None else CollectorRegistry()
        if process:
            ProcessCollector(registry=r)  # process_cpu_seconds_total, memory, fds
        self.connections = Gauge("chatd_connections", "Open connections, counted from "
                                 "accept, by listener", ["frontend"], registry=r)
        self.sessions = Gauge("chatd_sessions", "Chat sessions (connections that have "
                              "been greeted)", registry=r)
        self.rooms = Gauge("chatd_rooms", "Live rooms (someone is in them)", registry=r)
        self.received = Counter("chatd_messages_received", "Room messages and actions "
                                "received from clients", ["frontend"], registry=r)
        self.delivered = Counter("chatd_messages_delivered", "Events handed to a client's "
                                 "output queue by the bus", ["frontend"], registry=r)
        self.dropped = Counter("chatd_deliveries_dropped", "Events the bus had nobody to "
                               "deliver to (the room or person had gone)", registry=r)
        self.overflows = Counter("chatd_send_queue_overflows", "Clients dropped for not "
                                 "reading their output (--send-queue)", registry=r)
        self.ping_timeouts = Counter("chatd_ping_timeouts", "Sessions dropped for silence "
                                     "(--ping-timeout)", registry=r)
        self.floods = Counter("chatd_flood_refusals", "Requests refused by the flood limit",
                              registry=r)
        self.errors = Counter("chatd_errors", "Errors sent to clients, by code", ["code"],
                              registry=r)
        self.logins = Counter("chatd_logins", "Login attempts by result (ok, failed: wrong "
                              "nick or password)", ["result"], registry=r)
        self.presence_changes = Counter("chatd_presence_changes", "Joins, parts and quits "
                                        "by how their room heard of them", ["how"],
                                        registry=r)
        self.paced_requests = Counter("chatd_paced_requests", "Requests of newly connected "
                                      "clients that waited their turn (a reconnect storm)",
                                      registry=r)
        self.paced_waiting = Gauge("chatd_paced_waiting", "Requests of newly connected "
                                   "clients waiting their turn now", registry=r)
        self.store_seconds = Histogram("chatd_store_operation_seconds", "Time a store "
                                       "operation took, failures included",
                                       buckets=STORE_BUCKETS, registry=r)
        self.store_failures = Counter("chatd_store_failures", "Store operations that failed",
                                      registry=r)
        self.fanout_seconds = Histogram("chatd_fanout_seconds", "Time to hand one room "
                                        "event to every local member",
                                        buckets=FANOUT_BUCKETS, registry=r)
        self.lag_seconds = Histogram("chatd_reactor_lag_seconds", "How late a timer ran: "
                                     "the event loop's responsiveness",
                                     buckets=LAG_BUCKETS, registry=r)
        # The cluster (chatd.redislink, chatd.redisbus): one publish per room event.
        self.redis_publishes = Counter("chatd_redis_publishes", "Messages published to "
                                       "the other nodes through Redis", registry=r)
        self.redis_messages = Counter("chatd_redis_messages", "Messages received from "
                                      "other nodes through Redis", registry=r)
        self.redis_up = Gauge("chatd_redis_up", "1 while the Redis link is up (0: down, not "
                              "yet connected, or no --redis)", registry=r)
        self.redis_changes = Counter("chatd_redis_link_changes", "Times the Redis link went "
                                     "up or down", ["state"], registry=r)
        # Label children resolved once: the hot path does no label lookups.
        self._received = {fe: self.received.labels(fe) for fe in FRONT_ENDS}
        self._delivered = {fe: self.delivered.labels(fe) for fe in FRONT_ENDS}
        self._connections = {fe: self.connections.labels(fe) for fe in FRONT_ENDS}
        self._by_fmt = {fmt: self._delivered[fe] for fmt, fe in _FRONT_END_OF.items()}
        self._received_by_fmt = {fmt: self._received[fe] for fmt, fe in _FRONT_END_OF.items()}
        self._login_ok = self.logins.labels("ok")
        self._login_failed = self.logins.labels("failed")
        # Every series from the start (rate() needs a zero), resolved once: a client
        # can make errors as fast as it can send.
        self._errors = {code: self.errors.labels(code) for code in ERROR_CODES | {"other"}}
        self._fanout = self.fanout_seconds.observe
        self._presence = {how: self.presence_changes.labels(how) for how in PRESENCE_HOW}
        self.last_lag = 0.0

    def redis_published(self) -> None:
        self.redis_publishes.inc()

    def redis_received(self) -> None:
        self.redis_messages.inc()

    def redis_state(self, up: bool) -> None:
        self.redis_up.set(1 if up else 0)
        self.redis_changes.labels("up" if up else "down").inc()

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    # -- gauges read at scrape time: nothing to keep in step ----------------------
    def watch_service(self, service) -> None:
        self.sessions.set_function(lambda: len(service.sessions))
        self.rooms.set_function(lambda: len(service.rooms))

    def add_format(self, fmt, front_end: str) -> None:
        """A wire format made at run time (an IRC variant, chatd.irc.render) counts
        for ``front_end``."""
        self._by_fmt[fmt] = self._delivered[front_end]
        self._received_by_fmt[fmt] = self._received[front_end]

    def watch_pacer(self, pacer) -> None:
        self.paced_waiting.set_function(lambda: pacer.queued)

    def paced(self) -> None:
        self.paced_requests.inc()

    # -- admission ------------------------------------------------------------------
    def connection_opened(self, front_end: str | None) -> None:
        gauge = self._connections.get(front_end)
        if gauge is not None:
            gauge.inc()

    def connection_closed(self, front_end: str | None) -> None:
        gauge = self._connections.get(front_end)
        if gauge is not None:
            gauge.dec()

    # -- the dispatcher and the service -----------------------------------------------
    def message_received(self, fmt) -> None:
        counter = self._received_by_fmt.get(fmt)
        if counter is not None:
            counter.inc()

    def error(self, code: str) -> None:
        errors = self._errors
        (errors.get(code) or errors["other"]).inc()

    def flood_refused(self) -> None:
        self.floods.inc()

    def presence(self, how: str) -> None:
        self._presence[how].inc()

    def ping_timeout(self) -> None:
        self.ping_timeouts.inc()

    def login_result(self, result):
        """An addBoth callback on a login: counts a success or a wrong password."""
        if not isinstance(result, Failure):
            self._login_ok.inc()
        elif result.check(ChatError) and result.value.code == "login_failed":
            self._login_failed.inc()
        return result

    # -- delivery ----------------------------------------------------------------------
    def broadcast(self, outlets, exclude, seconds: float) -> None:
        """One room event was handed to every member: count them per front end,
        once per wire format, not per write."""
        by_fmt = self._by_fmt
        for fmt, writes in outlets.items():
            counter = by_fmt.get(fmt)
            if counter is not None:
                n = len(writes)
                if exclude is not None and exclude in writes:
                    n -= 1
                counter.inc(n)
        self._fanout(seconds)

    def delivered_by_format(self, counts) -> None:
        """Events handed out outside a room broadcast (a quit, a private message,
        a notice to everyone): ``{wire format: sessions}``, one increment each."""
        by_fmt = self._by_fmt
        for fmt, n in counts.items():
            counter = by_fmt.get(fmt)
            if counter is not None:
                counter.inc(n)

    def undelivered(self) -> None:
        self.dropped.inc()

    def send_queue_overflow(self) -> None:
        self.overflows.inc()

    # -- the store and the reactor -----------------------------------------------------
    def store_operation(self, result, started: float):
        """An addBoth callback on a store operation begun at ``started``."""
        self.store_seconds.observe(max(0.0, self.clock.seconds() - started))
        if isinstance(result, Failure):
            self.store_failures.inc()
        return result

    def reactor_lag(self, seconds: float) -> None:
        self.last_lag = seconds
        self.lag_seconds.observe(seconds)


class LagProbe(Service):
    """Every ``interval`` seconds, how much later than asked the clock ran us.

    A LoopingCall on the injected clock: the lag is the time between when a
    tick was due and when it ran, i.e. how long the reactor was busy with
    something else.  Missed ticks (a long stall) count as one long lag.
    """

    log = Logger()

    def __init__(self, metrics, clock, interval: float = LAG_INTERVAL):
        self.metrics = metrics
        self.clock = clock
        self.interval = interval
        self._due = None
        self._loop = LoopingCall.withCount(self._tick)
        self._loop.clock = clock

    def startService(self):
        super().startService()
        self._due = self.clock.seconds()  # the last tick's slot
        d = self._loop.start(self.interval, now=False)
        d.addErrback(lambda f: self.log.failure("reactor lag probe stopped", f))

    def stopService(self):
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def _tick(self, count: int):
        # LoopingCall keeps to its own grid and says how many slots passed
        # (more than one after a stall): the lag runs from the first one owed.
        owed = self._due + self.interval
        self._due += count * self.interval
        self.metrics.reactor_lag(max(0.0, self.clock.seconds() - owed))


def perf_counter() -> float:
    """Wall time for measuring CPU work within one turn (fan-out): the injected
    clock does not move inside a turn."""
    return time.perf_counter()
