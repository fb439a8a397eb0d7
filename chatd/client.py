"""A Twisted client for chatd's protocol, over WebSocket or the line port.

``ChatClient`` keeps one connection up with ``ClientService`` (exponential
backoff), picks its nick again and rejoins its rooms after every reconnect,
asking for what it missed (``"since"`` the last message id it saw), and drops
anything it has already delivered, so a bot sees each room message once.

    client = ChatClient("wss://chat.example.org/ws", "bot")
    client.on_event(lambda event: print(event), "message")
    client.start()
    yield client.ready()
    yield client.join("#lobby")
    ack = yield client.say("#lobby", "hello")   # ack["mid"]: the stored id

URLs: ``ws://host:port/ws`` and ``wss://…`` (the HTTP port), ``tcp://host:port``
and ``tls://host:port`` (the line port, switched to JSON lines).  TLS checks
the server's certificate and host name (``optionsForClientTLS``) against the
system's CAs, or only against ``ca_file`` when one is given; a failed check is
a ``TLSError`` that stops the client, never a silent fallback.

``format="protobuf"`` speaks the ``chatd.protobuf.v1`` WebSocket subprotocol
(binary frames, chatd/proto/chatd.proto) instead of JSON; events and acks
reach the program as the same dicts either way.  It needs a ws:// or wss://
URL (the line port speaks JSON), and a server that does not accept the
subprotocol is a failed connection, never a silent switch to JSON.

A registered nick needs its password: ``ChatClient(url, "bot", password=...)``
sends ``login`` instead of ``nick`` on every (re)connect, so the client takes
its nick back even from a guest holding it, or from its own older connection
the server has not yet noticed is dead.  Private messages that waited for the
account arrive first, as ``private`` events with ``"offline": true`` (register
listeners before ``start()``).  A refused login (``login_failed``,
``login_throttled``) does not get better by retrying: it is a ``LoginError``
that stops the client, as is being pushed out by another connection logging
in as the same account (two clients taking turns would never end).  The
password is sent in the ``login`` request on the wire, so use ``wss://`` or
``tls://`` anywhere but localhost; it is never logged.

Each login's ack carries a resume token; a reconnect sends ``resume`` with it
first (cheap for the server: no password hashing, which matters when a restart
brings every client back at once) and the password ``login`` only if the token
is refused (``resume_refused``: expired, revoked).  Each token is good once:
the ack of a resume brings the next.  The token is kept in memory, never logged.
"""

import itertools
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import error
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from chatd.pbcodec import decode_event, encode_request

DEFAULT_URL = "ws://127.0.0.1:8080/ws"
CONNECT_TIMEOUT = 10
ROOM_MESSAGES = ("message", "action")
FORMATS = ("json", "protobuf")
PROTOBUF_V1 = "chatd.protobuf.v1"


@dataclass(frozen=True)
class PresenceChange:
    """Who came and went in a room, however the server said it."""

    room: str
    joined: list  # nicks named (a coalesced notice names at most 50)
    left: list
    joins: int  # how many in all
    parts: int


def presence_change(event: dict) -> PresenceChange | None:
    """A ``join``, ``part`` or coalesced ``presence`` event read one way (a room's
    quits come as ``quit``, without a room, or inside ``presence``); else None.

        client.on_event(lambda e: track(presence_change(e)), "join", "part", "presence")
    """
    kind, room = event.get("type"), event.get("room")
    if not isinstance(room, str):
        return None
    if kind == "presence":
        joined, left = list(event.get("joined") or ()), list(event.get("left") or ())
        return PresenceChange(room, joined, left, int(event.get("joins", len(joined))),
                              int(event.get("parts", len(left))))
    if kind == "join":
        return PresenceChange(room, [event.get("nick")], [], 1, 0)
    if kind == "part":
        return PresenceChange(room, [], [event.get("nick")], 0, 1)
    return None


class RequestError(Exception):
    """The server refused a request; ``code`` is its stable error code."""

    def __init__(self, code: str, message: str, request: str | None = None):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.request = request

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class LoginError(RequestError):
    """The server refused the client's login for good (a wrong password, too
    many failures): the client has stopped; ``code`` says why."""


# Login refusals that retrying cannot fix; others (store_unavailable) are retried.
FATAL_LOGIN = frozenset({"login_failed", "login_throttled", "invalid_nick", "missing_argument"})
# The reason the server gives when a newer login of the account closes this one.
REPLACED = "logged in from another connection"


class TLSError(ConnectionError):
    """The server's certificate was refused, or TLS could not be set up."""


class ClientStopped(Exception):
    """The client was stopped before the request could be answered."""


def tls_error(reason: Failure, host: str) -> TLSError | None:
    """Say in plain words why a TLS connection failed, or None if it was not TLS."""
    value = reason.value
    if isinstance(value, VerificationError):
        return TLSError(f"the server's certificate is not valid for {host!r} "
                        f"(host name mismatch): {value}")
    if isinstance(value, SSL.Error):
        detail = str(value)
        if "certificate verify failed" in detail:
            return TLSError(f"the server's certificate for {host!r} is not trusted "
                            f"(unknown or self-signed CA; a private CA needs ca_file / "
                            f"--ca-file): {detail}")
        return TLSError(f"TLS handshake with {host!r} failed (is it a TLS port?): {detail}")
    return None


def trust_root(ca_file: str):
    with open(ca_file, "rb") as f:
        certs = x509.load_pem_x509_certificates(f.read())
    return trustRootFromCertificates([
        Certificate.loadPEM(c.public_bytes(Encoding.PEM)) for c in certs])


class Target:
    """Where to connect, parsed from a URL: the endpoint and the wire protocol."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss", "tcp", "tls"):
            raise ValueError(f"{url!r}: the URL scheme must be ws, wss, tcp or tls")
        if not parts.hostname:
            raise ValueError(f"{url!r}: no host")
        self.url = url
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.secure = parts.scheme in ("wss", "tls")
        self.websocket = parts.scheme in ("ws", "wss")
        default_port = {"ws": 8080, "wss": 443, "tcp": 9000, "tls": 9443}[parts.scheme]
        self.port = parts.port or default_port

    def endpoint(self, reactor, ca_file: str | None = None):
        tcp = HostnameEndpoint(reactor, self.host, self.port, timeout=CONNECT_TIMEOUT)
        if not self.secure:
            return tcp
        root = trust_root(ca_file) if ca_file else None
        return wrapClientTLS(optionsForClientTLS(self.host, trustRoot=root), tcp)


# -- the two wire protocols: frame JSON, hand events to the client -------------
class _Wire:
    """What both protocols share: tell the client when JSON flows and when it stops."""

    client = None
    opened = False
    given_up = False  # the client counted this connection as a failed attempt
    lost_reason = None

    def _init_wire(self, client):
        self.client = client

    def _opened(self):
        if not self.opened:
            self.opened = True
            self.client.connection_opened(self)

    def _closed(self, reason: Failure):
        self.lost_reason = reason
        self.client.connection_lost(self, reason)

    def _event(self, text: str):
        try:
            event = json.loads(text)
        except ValueError:
            self.client.log.warn("ignoring a line that is not JSON: {line!r}", line=text[:200])
            return
        if isinstance(event, dict):
            self.client.event_received(self, event)


class LineJSONProtocol(_Wire, LineReceiver):
    """The line port in JSON mode: ``/json``, then one JSON object per line."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20
    json_mode = False

    def __init__(self, client):
        self._init_wire(client)

    def connectionMade(self):
        self.sendLine(b"/json")

    def lineReceived(self, line):
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if not self.json_mode:
            # The text-mode welcome comes before our /json is answered.
            if text.startswith("{"):
                event = json.loads(text)
                if event.get("type") == "ack" and event.get("request") == "json":
                    self.json_mode = True
                    self._opened()
            return
        self._event(text)

    def send(self, request: dict):
        self.sendLine(json.dumps(request).encode("utf-8"))

    def connectionLost(self, reason):
        self._closed(reason)


class WebSocketJSONProtocol(_Wire, WebSocketClientProtocol):
    """One JSON object per WebSocket text frame."""

    def __init__(self, client):
        super().__init__()
        self._init_wire(client)

    def onOpen(self):
        self._opened()

    def onMessage(self, payload, isBinary):
        if not isBinary:
            self._event(payload.decode("utf-8", "replace"))

    def send(self, request: dict):
        self.sendMessage(json.dumps(request).encode("utf-8"))

    def connectionLost(self, reason):
        # Autobahn reports only "unclean close"; keep the transport's reason
        # (a certificate error, say) for the client.
        try:
            super().connectionLost(reason)
        finally:
            self._closed(reason)


class WebSocketProtobufProtocol(WebSocketJSONProtocol):
    """The chatd.protobuf.v1 subprotocol: one protobuf message per binary frame."""

    refused = None  # why we failed the handshake ourselves, for the client to see

    def onConnect(self, response):
        if response.protocol != PROTOBUF_V1:  # an older server: it would speak JSON
            self.refused = ConnectionError(
                f"the server did not choose {PROTOBUF_V1} (it speaks only JSON?)")
            raise self.refused

    def onMessage(self, payload, isBinary):
        if not isBinary:
            return
        try:
            event = decode_event(payload)
        except ValueError:  # not an Event, or an event type newer than this client
            self.client.log.warn("ignoring a frame that is not a chatd event ({n} bytes)",
                                 n=len(payload))
            return
        rid = event.get("id")
        if isinstance(rid, str) and rid.isdigit():
            event["id"] = int(rid)  # our ids are numbers; the binary protocol carries text
        self.client.event_received(self, event)

    def send(self, request: dict):
        self.sendMessage(encode_request(request), isBinary=True)

    def connectionLost(self, reason):
        super().connectionLost(reason if self.refused is None else Failure(self.refused))


class _LineFactory(Factory):
    def __init__(self, client):
        self.client = client

    def buildProtocol(self, addr):
        p = LineJSONProtocol(self.client)
        p.factory = self
        return p


class _WebSocketFactory(WebSocketClientFactory):
    def __init__(self, client, url, fmt="json"):
        # JSON offers no subprotocol, so any chatd (older ones too) accepts it.
        super().__init__(url, protocols=[PROTOBUF_V1] if fmt == "protobuf" else None)
        self.protocol_class = (WebSocketProtobufProtocol if fmt == "protobuf"
                               else WebSocketJSONProtocol)
        self.client = client
        self.setProtocolOptions(openHandshakeTimeout=CONNECT_TIMEOUT, closeHandshakeTimeout=3,
                                autoPingInterval=0)

    def buildProtocol(self, addr):
        p = self.protocol_class(self.client)
        p.factory = self
        return p


class _ObservedEndpoint:
    """Lets the client count failed connection attempts ``ClientService`` makes."""

    def __init__(self, endpoint, on_failure):
        self.endpoint = endpoint
        self.on_failure = on_failure

    def connect(self, factory):
        d = self.endpoint.connect(factory)
        d.addErrback(self._failed)
        return d

    def _failed(self, reason):
        self.on_failure(reason)
        return reason

    def __repr__(self):
        return repr(self.endpoint)


class _Match:
    def __init__(self, want):
        if callable(want):
            self.test = want
        else:
            self.test = lambda e: all(e.get(k) == v for k, v in want.items())
        self.deferred = Deferred()


# -- the client ----------------------------------------------------------------
class ChatClient:
    """One chatd user that stays connected.

    ``on_event(callback, *types)`` registers ``callback(event)`` for server
    events (dicts in the protocol's JSON schema; all types if none are given).
    ``request(type, **fields)`` returns a Deferred that fires with the ack or
    fails with ``RequestError``.  ``ready()`` fires once connected, named and
    back in every room.  Besides the server's events, listeners see
    ``{"type": "connected", "nick", "rooms"}`` after each (re)connect and
    ``{"type": "disconnected", "reason"}`` when a connection drops.

    With ``password``, ``nick`` is the registered nick to log in as, on every
    connect; a refused login fails ``ready()`` with ``LoginError`` and stops
    the client (see the module docstring).  After a reconnect the client is
    that nick again, even if ``set_nick`` changed it meanwhile.
    """

    log = Logger()

    def __init__(self, url: str, nick: str, *, reactor=None, ca_file: str | None = None,
                 endpoint=None, retry_policy=None, password: str | None = None,
                 format: str = "json"):
        if format not in FORMATS:
            raise ValueError(f"the format must be one of {', '.join(FORMATS)}")
        if password is not None and (not isinstance(password, str) or not password):
            raise ValueError("the password must be a non-empty string")
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.target = Target(url)
        if format == "protobuf" and not self.target.websocket:
            raise ValueError("protobuf needs a ws:// or wss:// URL (the line port speaks JSON)")
        self.format = format
        self.nick = nick
        self.account = nick if password is not None else None  # the nick logged in as
        self._password = password
        self._token = None  # the resume token the last login's ack gave (chatd.accounts)
        self.rooms = {}  # room key -> room name, in join order
        self._last_mid = {}  # room key -> highest message id delivered
        self._replayed = set()  # (room key, mid) delivered as history on this connection
        self._listeners = []
        self._matches = []
        self._pending = {}  # request id -> (Deferred, protocol)
        self._ids = itertools.count(1)
        self._proto = None  # the connection once resumed
        self._waiters = []  # (Deferred, fail_after)
        self._failures = 0
        self._stopped = False
        self.fatal = None  # the Failure that stopped the client for good
        policy = retry_policy or backoffPolicy(initialDelay=1.0, maxDelay=30.0, factor=2.0)
        if endpoint is None:
            endpoint = self.target.endpoint(reactor, ca_file)
        if self.target.websocket:
            factory = _WebSocketFactory(self, url, format)
        else:
            factory = _LineFactory(self)
        self._service = ClientService(
            _ObservedEndpoint(endpoint, lambda f: self._attempt_failed(self._explain(f))),
            factory,
            # ClientService counts only refused connections; a server that
            # accepts and then turns us away (nick taken) must back off too.
            retryPolicy=lambda attempts: policy(max(attempts, self._failures)),
            clock=reactor)

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> "ChatClient":
        self._service.startService()
        return self

    def stop(self, reason: str = "") -> Deferred:
        """Quit politely if connected, stop reconnecting; fires once disconnected."""
        if self._stopped:
            return succeed(None) if not self._service.running else self._service.stopService()
        self._stopped = True
        if self._proto is not None:
            self._proto.send({"type": "quit", "reason": reason})
        self._fail_waiters(Failure(ClientStopped("the client was stopped")), force=True)
        if not self._service.running:
            return succeed(None)
        return self._service.stopService()

    @property
    def connected(self) -> bool:
        return self._proto is not None

    def ready(self, fail_after: int | None = None) -> Deferred:
        """Fires with the client once connected and resumed; fails with the reason
        after ``fail_after`` failed attempts in a row (never, by default) or when
        the client stops for good (a TLS error, ``stop()``)."""
        if self._proto is not None:
            return succeed(self)
        if self.fatal is not None:
            return fail(self.fatal)
        if self._stopped:
            return fail(ClientStopped("the client was stopped"))
        d = Deferred()
        self._waiters.append((d, fail_after))
        return d

    # -- events ----------------------------------------------------------------------
    def on_event(self, callback, *types: str):
        """Call ``callback(event)`` for every server event (of ``types``, if given)."""
        self._listeners.append((callback, frozenset(types)))
        return callback

    def wait_for(self, want) -> Deferred:
        """The next event matching ``want`` (a dict of fields, or a predicate)."""
        m = _Match(want)
        self._matches.append(m)
        return m.deferred

    # -- requests ------------------------------------------------------------------
    def request(self, type_: str, **fields) -> Deferred:
        """Send a request once connected; fires with the ack (a dict) or fails with
        ``RequestError`` or, if the connection drops first, ``ConnectionLost``."""
        if self.fatal is not None:
            return fail(self.fatal)
        return self.ready().addCallback(lambda _: self._send(self._proto, type_, fields))

    def set_nick(self, nick: str) -> Deferred:
        def done(ack):
            self.nick = ack["nick"]
            return ack
        return self.request("nick", nick=nick).addCallback(done)

    def join(self, room: str) -> Deferred:
        def done(ack):
            self.rooms[ack["room"].lower()] = ack["room"]
            return ack
        return self.request("join", room=room).addCallback(done)

    def part(self, room: str, reason: str = "") -> Deferred:
        def done(result):
            self.rooms.pop(room.lower(), None)
            return result
        return self.request("part", room=room, reason=reason).addCallback(done)

    def say(self, room: str, text: str) -> Deferred:
        return self.request("message", room=room, text=text)

    def action(self, room: str, text: str) -> Deferred:
        return self.request("action", room=room, text=text)

    def private(self, to: str, text: str) -> Deferred:
        return self.request("private", to=to, text=text)

    def who(self, room: str) -> Deferred:
        return self.request("who", room=room)

    def list_rooms(self) -> Deferred:
        return self.request("rooms")

    # -- connection handling (called by ClientService and the protocols) ------------
    def _send(self, proto, type_: str, fields: dict) -> Deferred:
        rid = next(self._ids)
        d = Deferred()
        self._pending[rid] = (d, proto)
        proto.send({"type": type_, "id": rid, **fields})
        return d

    # Resuming is ours, not ClientService's prepareConnection: that one cannot
    # take a connection that drops while being prepared (automat NoTransition).
    def connection_opened(self, proto):
        """JSON flows: nick (or login), then every room with what we missed."""
        if self._password is None:
            d = self._send(proto, "nick", {"nick": self.nick})
        else:
            d = self._log_in(proto)
            d.addErrback(self._login_refused)
        d.addCallback(lambda ack: self._rejoin(proto, ack))
        d.addCallbacks(lambda _: self._resumed(proto),
                       lambda f: self._resume_failed(proto, f))

    def _log_in(self, proto) -> Deferred:
        """``resume`` with the token if we have one, else (or if it is refused) ``login``."""
        token, self._token = self._token, None  # spent, whatever the answer
        if token is None:
            d = self._send(proto, "login", {"nick": self.account, "password": self._password})
        else:
            d = self._send(proto, "resume", {"nick": self.account, "token": token})
            d.addErrback(self._resume_refused, proto)
        return d.addCallback(self._keep_token)

    def _resume_refused(self, reason, proto):
        reason.trap(RequestError)
        if reason.value.code != "resume_refused":
            return reason
        self.log.info("resume token refused; logging in as {nick} with the password",
                      nick=self.account)
        return self._send(proto, "login", {"nick": self.account, "password": self._password})

    def _keep_token(self, ack):
        self._token = ack.get("token")
        return ack

    def _login_refused(self, reason):
        reason.trap(RequestError)
        e = reason.value
        if e.code in FATAL_LOGIN:
            raise LoginError(e.code, e.message, e.request)
        return reason

    def _rejoin(self, proto, nick_ack):
        self.nick = nick_ack["nick"]
        self._replayed = set()
        joins = [self._rejoin_room(proto, key, name) for key, name in list(self.rooms.items())]
        d = succeed(None)
        for j in joins:
            # Each room's history has arrived before we say ready.
            d.addCallback(lambda _, j=j: j)
        return d

    def _rejoin_room(self, proto, key, name):
        since = self._last_mid.get(key)
        fields = {"room": name} if since is None else {"room": name, "since": since}

        def joined(ack):
            # A long absence comes back in pages: ask again from where this one ended.
            if ack.get("more") and self._last_mid.get(key, since) != since:
                return self._rejoin_room(proto, key, name)
            return ack
        return self._send(proto, "join", fields).addCallbacks(
            joined, self._rejoin_failed, errbackArgs=(key, name))

    def _rejoin_failed(self, reason, key, name):
        if reason.check(RequestError):
            # The room refused us now (a limit changed, say): report it, carry on.
            self.rooms.pop(key, None)
            self.log.warn("could not rejoin {room}: {error}", room=name, error=reason.value)
            self._notify({"type": "error", "code": reason.value.code,
                          "message": f"could not rejoin {name}: {reason.value.message}"})
            return None
        return reason

    def _resumed(self, proto):
        self._proto = proto
        self._failures = 0
        self.log.info("connected to {url} as {nick}; rooms: {rooms}", url=self.target.url,
                      nick=self.nick, rooms=list(self.rooms.values()))
        waiters, self._waiters = self._waiters, []
        for d, _ in waiters:
            d.callback(self)
        self._notify({"type": "connected", "nick": self.nick, "rooms": list(self.rooms.values())})
        return proto

    def _resume_failed(self, proto, reason):
        if proto.given_up or proto.lost_reason is not None:
            return
        proto.given_up = True
        self._attempt_failed(reason)
        proto.transport.loseConnection()

    def _explain(self, reason: Failure) -> Failure:
        if not self.target.secure:
            return reason
        problem = tls_error(reason, self.target.host)
        if problem is None:
            return reason
        return Failure(problem)

    def _attempt_failed(self, reason: Failure):
        self._failures += 1
        if isinstance(reason.value, (TLSError, LoginError)):
            # A certificate or a password does not fix itself by retrying.
            self._give_up(reason)
            return
        self.log.info("connection to {url} failed ({n} in a row): {error}",
                      url=self.target.url, n=self._failures, error=reason.getErrorMessage())
        self._fail_waiters(reason)

    def _give_up(self, reason: Failure):
        """Stop for good and say why: every waiter and later request fails with it."""
        if self.fatal is not None:
            return
        self.fatal = reason
        self.log.error("{url}: {error}", url=self.target.url, error=reason.value)
        self._fail_waiters(reason, force=True)
        self._stopped = True
        self.reactor.callLater(0, self._service.stopService)

    def _fail_waiters(self, reason: Failure, force: bool = False):
        keep = []
        for d, fail_after in self._waiters:
            if force or (fail_after is not None and self._failures >= fail_after):
                d.errback(reason)
            else:
                keep.append((d, fail_after))
        self._waiters = keep
        if force:
            for m in self._matches:
                m.deferred.errback(reason)
            self._matches = []

    def connection_lost(self, proto, reason):
        if self._proto is not proto and not proto.given_up and not self._stopped:
            # It never got as far as resuming: a failed attempt.
            proto.given_up = True
            self._attempt_failed(self._explain(reason))
        for rid, (d, p) in list(self._pending.items()):
            if p is proto:
                del self._pending[rid]
                d.errback(Failure(error.ConnectionLost(
                    f"connection lost before the server answered: {reason.getErrorMessage()}")))
        if self._proto is proto:
            self._proto = None
            self.log.info("disconnected from {url}: {reason}", url=self.target.url,
                          reason=reason.getErrorMessage())
            self._notify({"type": "disconnected", "reason": reason.getErrorMessage()})

    def event_received(self, proto, event: dict):
        kind = event.get("type")
        if kind in ("ack", "error") and event.get("id") in self._pending:
            d, _ = self._pending.pop(event["id"])
            if kind == "ack":
                d.callback(event)
            else:
                d.errback(RequestError(event.get("code", "error"), event.get("message", ""),
                                       event.get("request")))
            return
        if kind == "ping":
            proto.send({"type": "pong"})
            return
        if kind == "bye" and self.account is not None and event.get("reason") == REPLACED:
            # Logging in again would push that other connection out in turn.
            self._give_up(Failure(LoginError(
                "logged_in_elsewhere",
                f"another connection logged in as {self.account}; not taking it back",
                "login")))
        if kind in ROOM_MESSAGES and not self._first_time(event):
            return
        self._notify(event)

    def _first_time(self, event: dict) -> bool:
        """Whether a room message is new to us (and remember it)."""
        room, mid = event.get("room"), event.get("mid")
        if not isinstance(room, str) or not isinstance(mid, int):
            return True
        key = room.lower()
        last = self._last_mid.get(key)
        if event.get("history"):
            # Everything up to the last id we delivered was seen before the
            # reconnect; the server should not resend it, but if it does, skip it.
            if last is not None and mid <= last:
                return False
            self._replayed.add((key, mid))
        elif (key, mid) in self._replayed:
            # Stored while we rejoined: sent as history and then live.  Live
            # messages are not compared with ``last``: a daemon without
            # persistence restarts its ids at 1.
            return False
        if last is None or mid > last:
            self._last_mid[key] = mid
        return True

    def _notify(self, event: dict):
        kind = event.get("type")
        for callback, types in list(self._listeners):
            if types and kind not in types:
                continue
            try:
                callback(event)
            except Exception:
                self.log.failure("event callback {callback} failed", callback=callback)
        if self._matches:
            keep = []
            for m in self._matches:
                if m.test(event):
                    m.deferred.callback(event)
                else:
                    keep.append(m)
            self._matches = keep
