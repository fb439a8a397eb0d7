"""The link to Redis: one command connection and one pub/sub connection.

Interface (CL-B and CL-C build on it; keep it, or update this doc string):

* ``RedisLink(reactor, url, prefix, node_id, timeout=5.0)``: a twisted
  ``Service``.  Started, it connects both connections; it is ``up`` once both
  are connected, the database selected, the registered scripts loaded and
  every remembered subscription restored.
* ``up`` (bool): read it before anything that needs the cluster.
* ``key(*parts)`` -> ``str``: ``prefix + ":".join(parts)`` (the prefix ends
  with its own separator, ``chatd:`` by default).
* ``command(name, *args)`` -> Deferred firing the decoded reply (bytes, int,
  list, None); a Redis error reply fails it with ``RedisError``.  While the
  link is down it fails at once with ``RedisUnavailable``; a reply slower than
  ``timeout`` fails it with ``RedisUnavailable`` and the connection is cut and
  reconnected (replies are matched by order, so a late one cannot be trusted).
* ``publish(channel, data: bytes)`` -> Deferred (the number of receivers).
  ``channel`` is a name under the prefix: the link adds the prefix.
* ``publish_many(channels, data: bytes)`` -> Deferred (the receivers, all
  channels together): the same payload on each channel, in the order given,
  in one script call (one round trip, however many channels).
* ``Script(source)``: a Lua script, known by its SHA1.  ``run_script(script,
  keys=(), args=())`` -> Deferred of its reply (``keys`` go as given: full
  names, from ``key()``): ``EVALSHA``; if Redis has lost it (``NOSCRIPT``: a
  ``SCRIPT FLUSH``, a restart), ``EVAL`` with the source, and it is loaded
  again.  A script is registered with the link on its first run (or
  ``register_script(script)``); registered scripts are loaded (``SCRIPT
  LOAD``) on every (re)connect before the link is ``up``.
* ``subscribe(channel, callback, on_ready=None)`` / ``unsubscribe(channel)``:
  ``callback(data: bytes)`` for each message on the channel (prefix added by
  the link); ``on_ready()`` once Redis confirms it.  Remembered, and restored
  after a reconnect.
* ``add_listener(on_up=None, on_down=None)``: called with no argument each
  time the link comes up (after the subscriptions are restored: resync here)
  and each time it goes down.

Why a small RESP client on Twisted's ``Protocol`` rather than txredisapi: the
link must fail a command at once while Redis is away (txredisapi's lazy
connections queue it until a reconnect), time out each command, know the
moment a connection is lost or a subscription restored (to tell listeners),
and reconnect with our own backoff and jitter; txredisapi's protocol classes
are bound to its own connection-pool factory, so all of that would be
written around it.  RESP2 is small: the parser below is its whole grammar.
"""

import hashlib
import random
import socket
from collections import deque
from urllib.parse import unquote, urlsplit

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatd import fastsend
from chatd.metrics import NO_METRICS

DEFAULT_PREFIX = "chatd:"
DEFAULT_TIMEOUT = 5.0
# Reconnect backoff: the first retry after about BACKOFF_FIRST s, doubling up
# to BACKOFF_MAX, each delay drawn between half and all of it (jitter, so
# nodes cut together do not all come back in the same instant).
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 10.0


class RedisUnavailable(Exception):
    """Redis cannot be reached now, or did not answer in time."""


class RedisError(Exception):
    """Redis answered with an error reply (its text is the message)."""


class Script:
    """A Lua script, run by its SHA1 so that each call sends 40 bytes, not the source."""

    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    def __repr__(self):
        return f"<Script {self.sha[:8]}>"


# ARGV: the payload, then the channels (full names).  Channels are not keys,
# so they go in ARGV: KEYS are for what a script reads or writes.
PUBLISH_MANY = Script("""
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('PUBLISH', ARGV[i], ARGV[1])
end
return n
""")


def default_node_id() -> str:
    return f"{socket.gethostname()}-{__import__('os').getpid()}"


def _shown(url: str) -> str:
    """``url`` for an error message: a password in it replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


def parse_url(url: str) -> tuple:
    """``redis://[:PASSWORD@]HOST[:PORT][/DB]`` -> (host, port, db, password)."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(f"{_shown(url)!r} is not like redis://HOST:6379/0")
    path = parts.path.strip("/")
    try:
        port = parts.port or 6379
        db = int(path) if path else 0
    except ValueError:
        raise ValueError(f"{_shown(url)!r}: the port and the database are numbers") from None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, db, password


class _Incomplete(Exception):
    pass


def _parse(buf: bytes, pos: int):
    """One RESP2 reply from ``buf`` at ``pos`` -> (value, next pos); _Incomplete if cut."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete()
    kind, line = buf[pos:pos + 1], buf[pos + 1:end]
    pos = end + 2
    if kind == b"+":
        return line, pos
    if kind == b"-":
        return RedisError(line.decode("utf-8", "replace")), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise _Incomplete()
        return buf[pos:pos + n], pos + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    raise ValueError(f"not RESP: {kind!r}")


def _arg(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value).encode()
    raise TypeError(f"a Redis argument is bytes, str or a number, not {type(value).__name__}")


def encode_command(args) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = _arg(a)
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


class RespProtocol(Protocol):
    """One Redis connection: requests pipelined, replies matched in order.

    ``on_push``: on a pub/sub connection, called with each message
    (``[b"message", channel, data]``), which answers no request.
    """

    def __init__(self, on_push=None, flusher=None):
        self.on_push = on_push
        # With a flusher (chatd.fastsend.TurnFlusher), a turn's commands go out
        # together at its end, as the clients' output does: one send, as
        # transport.write would, but without its epoll round.
        self.flusher = flusher
        self._out = None  # this turn's encoded commands, waiting for the end of the turn
        self.waiting = deque()
        self.buf = b""
        self.lost = Deferred()  # fires (with None) when the connection goes
        self.reason = None  # why it went

    _direct = None  # the TCP connection, for sends without a trip through the reactor

    def connectionMade(self):
        # As hiredis does: a pipelined command must not wait for Nagle's algorithm
        # to gather more (a publish would wait for the previous reply's ACK).
        set_nodelay = getattr(self.transport, "setTcpNoDelay", None)
        if set_nodelay is not None:
            set_nodelay(True)
        self._direct = fastsend.direct(self.transport)

    def request(self, args) -> Deferred:
        d = Deferred()
        self.waiting.append(d)
        data = encode_command(args)
        if self._direct is None or self.flusher is None:
            self.transport.write(data)
        elif self._out is None:
            self._out = [data]
            self.flusher.add(self)
        else:
            self._out.append(data)
        return d

    def send_turn(self) -> None:
        """The turn's commands in one send, straight to the socket when nothing is
        buffered (chatd.fastsend): ``transport.write`` would register the socket
        for writing and send on the next poll, two ``epoll_ctl`` calls a turn.
        One send a turn matters downstream too: the commands of one group commit
        (several publishes) reach Redis, and their messages the other nodes, in
        one segment rather than one each."""
        out, self._out = self._out, None
        if out:
            fastsend.send(self._direct, b"".join(out))

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        pos = 0
        try:
            while pos < len(self.buf):
                reply, pos = _parse(self.buf, pos)
                self._reply(reply)
        except _Incomplete:
            pass
        except ValueError:
            self.transport.abortConnection()  # out of step with the server: start again
            return
        self.buf = self.buf[pos:]

    def _reply(self, reply) -> None:
        if (self.on_push is not None and isinstance(reply, list) and reply
                and reply[0] == b"message"):
            self.on_push(reply[1], reply[2])
            return
        if not self.waiting:
            return  # a reply to a request already given up on (the connection is being cut)
        d = self.waiting.popleft()
        if isinstance(reply, RedisError):
            d.errback(reply)
        else:
            d.callback(reply)

    def connectionLost(self, reason=None) -> None:
        self._out = None  # nobody to send them to; their requests fail below
        waiting, self.waiting = self.waiting, deque()
        for d in waiting:
            d.errback(RedisUnavailable("the connection to Redis was lost"))
        self.reason = reason
        self.lost.callback(None)


class RedisLink(Service):
    log = Logger()

    def __init__(self, reactor, url: str, prefix: str = DEFAULT_PREFIX, node_id: str = "",
                 timeout: float = DEFAULT_TIMEOUT, metrics=NO_METRICS):
        self.reactor = reactor
        self.url = url
        self.host, self.port, self.db, self.password = parse_url(url)
        self.prefix = prefix
        self.node_id = node_id or default_node_id()
        self.timeout = timeout
        self.metrics = metrics
        self.up = False
        self.since = None  # when the link last went up or down (reactor seconds)
        self.failures = 0  # connection attempts in a row that failed
        self.reconnects = 0  # times the link came back after going down
        self._cmd = self._sub = None
        self._channels = {}  # full channel name (bytes) -> callback
        self._listeners = []
        self._generation = 0  # bumps on every new attempt: late callbacks of older ones are ignored
        self._retry = None
        self._pinger = LoopingCall(self._ping)
        self._pinger.clock = reactor
        self._was_up = False
        self._timers = set()  # reply deadlines pending
        self._scripts = {}  # sha -> Script: loaded on every (re)connect
        self._flusher = fastsend.TurnFlusher(reactor)  # both connections' end-of-turn sends
        self.register_script(PUBLISH_MANY)

    # -- the interface ----------------------------------------------------------
    def key(self, *parts) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    def command(self, name: str, *args) -> Deferred:
        if not self.up:
            return fail(RedisUnavailable("Redis is unavailable"))
        return self._timed(self._cmd, (name,) + args)

    def publish(self, channel: str, data: bytes) -> Deferred:
        """No deadline of its own (a timer per message would cost on the hot
        path): replies come in order, so a publish that is never answered holds
        up the next ping, whose deadline cuts the link; the publish then fails
        with RedisUnavailable like every request in flight."""
        if not self.up:
            return fail(RedisUnavailable("Redis is unavailable"))
        self.metrics.redis_published()
        return self._cmd.request(("PUBLISH", self.key(channel), data))

    def publish_many(self, channels, data: bytes) -> Deferred:
        """One script call (one round trip) that publishes ``data`` on each
        channel (names under the prefix); fires the receivers of all of them."""
        if not self.up:
            return fail(RedisUnavailable("Redis is unavailable"))
        self.metrics.redis_published()
        return self.run_script(PUBLISH_MANY, (),
                               [data] + [self.key(c) for c in channels])

    def register_script(self, script: Script) -> None:
        """Loaded on every (re)connect, before ``up``; now too if the link is up."""
        if script.sha in self._scripts:
            return
        self._scripts[script.sha] = script
        if self.up:
            self._load(script)

    def run_script(self, script: Script, keys=(), args=()) -> Deferred:
        """``EVALSHA``; on ``NOSCRIPT`` (Redis lost its script cache), ``EVAL``
        with the source, and the script is loaded again for the next call."""
        if not self.up:
            return fail(RedisUnavailable("Redis is unavailable"))
        self.register_script(script)
        keys, args = list(keys), list(args)
        d = self.command("EVALSHA", script.sha, len(keys), *keys, *args)

        def lost(failure):
            failure.trap(RedisError)
            if not str(failure.value).startswith("NOSCRIPT"):
                return failure
            self.log.info("Redis had lost script {sha}: run with EVAL and loaded again",
                          sha=script.sha)
            again = self.command("EVAL", script.source, len(keys), *keys, *args)
            # EVAL caches a script only until evicted (Redis 7.4+): load it for good.
            self._load(script)
            return again
        return d.addErrback(lost)

    def _load(self, script: Script) -> None:
        self.command("SCRIPT", "LOAD", script.source).addErrback(
            self._load_failed, script)

    def _load_failed(self, failure, script) -> None:
        # Not fatal: a script missing at its next call is run with EVAL.
        failure.trap(RedisUnavailable, RedisError)
        if failure.check(RedisError):
            self._refused(failure, script)

    def _refused(self, failure, script) -> None:
        failure.trap(RedisError)
        self.log.warn("Redis refused to load script {sha}: {error}", sha=script.sha,
                      error=failure.getErrorMessage())

    def subscribe(self, channel: str, callback, on_ready=None) -> None:
        """``on_ready()``: once Redis has confirmed this subscription (not called
        if the link is down now: the link's ``on_up`` comes after every
        subscription is restored)."""
        full = self.key(channel).encode("utf-8")
        fresh = full not in self._channels
        self._channels[full] = callback
        if fresh and self.up:
            d = self._timed(self._sub, ("SUBSCRIBE", full))
            if on_ready is not None:
                d.addCallback(lambda _: on_ready())
            d.addErrback(self._ignore)

    def unsubscribe(self, channel: str) -> None:
        full = self.key(channel).encode("utf-8")
        if self._channels.pop(full, None) is not None and self.up:
            self._timed(self._sub, ("UNSUBSCRIBE", full)).addErrback(self._ignore)

    def subscribed(self) -> list:
        """The channels (names under the prefix) this node listens to."""
        n = len(self.prefix)
        return sorted(c.decode("utf-8")[n:] for c in self._channels)

    def add_listener(self, on_up=None, on_down=None) -> None:
        self._listeners.append((on_up, on_down))

    # -- lifecycle -------------------------------------------------------------
    def startService(self):
        super().startService()
        self._connect()

    def stopService(self):
        """Close both connections; fires once they are closed."""
        super().stopService()
        self._generation += 1
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._pinger.running:
            self._pinger.stop()
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers.clear()
        self.up = False
        closed = []
        for proto in (self._cmd, self._sub):
            if proto is not None and proto.transport is not None:
                closed.append(proto.lost)
                proto.transport.loseConnection()
        self._cmd = self._sub = None
        return gatherResults(closed).addCallback(lambda _: None)

    def _connect(self) -> None:
        self._generation += 1
        gen = self._generation
        endpoint = HostnameEndpoint(self.reactor, self.host, self.port, timeout=self.timeout)
        cmd = RespProtocol(flusher=self._flusher)
        sub = RespProtocol(on_push=self._pushed, flusher=self._flusher)
        d = gatherResults([connectProtocol(endpoint, cmd), connectProtocol(endpoint, sub)],
                          consumeErrors=True)
        # Both connections, or a retry: a half-open link is no link.
        timer = self.reactor.callLater(self.timeout * 2, d.cancel)
        d.addBoth(lambda r: timer.active() and timer.cancel() or r)
        d.addCallback(lambda _: self._setup(gen, cmd, sub))
        d.addErrback(self._attempt_failed, gen, cmd, sub)

    def _setup(self, gen, cmd, sub) -> Deferred:
        if gen != self._generation:
            for p in (cmd, sub):
                p.transport.loseConnection()
            return None
        self._cmd, self._sub = cmd, sub
        for p in (cmd, sub):
            p.lost.addCallback(lambda _, p=p: self._connection_lost(p.reason, gen))
        steps = []
        for p in (cmd, sub):
            if self.password is not None:
                steps.append(self._timed(p, ("AUTH", self.password)))
        steps.append(self._timed(cmd, ("SELECT", self.db)))
        # Loaded before "up", so a script's first call after a (re)connect, or
        # after Redis restarted empty, is one EVALSHA.
        # A refusal (an ACL without SCRIPT, say) is logged, not fatal: the
        # script then runs with EVAL.
        for script in list(self._scripts.values()):
            steps.append(self._timed(cmd, ("SCRIPT", "LOAD", script.source)).addErrback(
                self._refused, script))
        for full in list(self._channels):
            steps.append(self._timed(sub, ("SUBSCRIBE", full)))
        d = gatherResults(steps, consumeErrors=True)
        d.addCallback(lambda _: self._came_up(gen))
        return d

    def _came_up(self, gen) -> None:
        if gen != self._generation:
            return
        self.up = True
        self.since = self.reactor.seconds()
        self.failures = 0
        self.metrics.redis_state(True)
        again = self._was_up
        if again:
            self.reconnects += 1
        self._was_up = True
        self.log.info("Redis link up ({host}:{port}/{db}, node {node}, {channels} channels"
                      "{again})", host=self.host, port=self.port, db=self.db,
                      node=self.node_id, channels=len(self._channels),
                      again=", reconnected" if again else "")
        self._pinger.start(self.timeout, now=False).addErrback(
            lambda f: self.log.failure("Redis ping loop stopped", f))
        self._tell_listeners(0, "on_up")

    def _tell_listeners(self, which: int, name: str) -> None:
        """Call each listener's ``on_up`` (0) or ``on_down`` (1); one that fails is
        logged and does not stop the others."""
        for pair in list(self._listeners):
            callback = pair[which]
            if callback is not None:
                try:
                    callback()
                except Exception:
                    self.log.failure("a Redis link listener failed ({which})", which=name)

    def _attempt_failed(self, failure, gen, cmd, sub) -> None:
        if gen != self._generation:
            return
        for p in (cmd, sub):
            if p.transport is not None:
                p.transport.abortConnection()
        self._down(failure.getErrorMessage() or failure.type.__name__)

    def _connection_lost(self, reason, gen) -> None:
        if gen != self._generation:
            return
        why = "connection closed" if reason is None or reason.check(ConnectionDone) \
            else reason.getErrorMessage()
        self._down(why)

    def _down(self, why: str) -> None:
        """One attempt or connection failed: cut both, tell listeners, retry later."""
        self._generation += 1
        for p in (self._cmd, self._sub):
            if p is not None and p.transport is not None:
                p.transport.abortConnection()
        self._cmd = self._sub = None
        if self._pinger.running:
            self._pinger.stop()
        was_up, self.up = self.up, False
        self.failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failures - 1))
        delay *= 0.5 + random.random() / 2
        if was_up:
            self.since = self.reactor.seconds()
            self.metrics.redis_state(False)
            self.log.warn("Redis link down ({host}:{port}): {why}; cluster features are "
                          "refused until it is back; retrying in {delay:.2f}s",
                          host=self.host, port=self.port, why=why, delay=delay)
            self._tell_listeners(1, "on_down")
        else:
            log = self.log.warn if self.failures in (1, 10) or self.failures % 100 == 0 \
                else self.log.debug
            log("cannot reach Redis at {host}:{port} (attempt {n}): {why}; retrying in "
                "{delay:.2f}s", host=self.host, port=self.port, n=self.failures, why=why,
                delay=delay)
        if self.running:
            self._retry = self.reactor.callLater(delay, self._connect)

    # -- requests ----------------------------------------------------------------
    def _timed(self, proto, args) -> Deferred:
        if proto is None or proto.transport is None:
            return fail(RedisUnavailable("Redis is unavailable"))
        d = proto.request(args)
        gen = self._generation

        def late():
            if gen == self._generation:
                self._down(f"no answer within {self.timeout}s")
        timer = self.reactor.callLater(self.timeout, late)
        self._timers.add(timer)

        def done(result):
            self._timers.discard(timer)
            if timer.active():
                timer.cancel()
            return result
        return d.addBoth(done)

    def _ping(self) -> None:
        # A black-holed link answers nothing: the ping's timeout finds it.
        for proto in (self._cmd, self._sub):
            self._timed(proto, ("PING",)).addErrback(self._ignore)

    def _pushed(self, channel: bytes, data: bytes) -> None:
        callback = self._channels.get(channel)
        if callback is None:
            return  # unsubscribed meanwhile
        try:
            callback(data)
        except Exception:
            self.log.failure("handling a message on {channel} failed",
                             channel=channel.decode("utf-8", "replace"))

    @staticmethod
    def _ignore(failure) -> None:
        failure.trap(RedisUnavailable, RedisError)
