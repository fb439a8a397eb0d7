"""The WebSocket front end: one JSON object per text frame, same schema as JSON lines,
or, negotiated by subprotocol, one Protocol Buffers message per binary frame.

The client names the subprotocols it speaks in the opening handshake; the first
of them this server supports is the connection's format for good:
``chatd.json.v1`` (also when the client offers none) or ``chatd.protobuf.v1``
(chatd/proto/chatd.proto).  A list with neither is refused with HTTP 400.

Every byte this protocol sends after the opening handshake goes through the
connection's output queue, Autobahn's own frames too (``sendData`` is the
funnel Autobahn writes ping, pong and close frames through), so everything
leaves in order and counts against the send-queue cap: a close frame can
never overtake the data queued before it.
"""

import base64
import ipaddress

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger

from chatd import wire
from chatd.admission import Admission
from chatd.errors import ChatError
from chatd.jsonreq import parse_json_request
from chatd.origin import OriginPolicy
from chatd.pbcodec import decode_request
from chatd.sink import SinkBase

# The id of the answer to a login made with the upgrade request's credentials.
CONNECT_LOGIN_ID = "connect"


def basic_credentials(header) -> tuple | None:
    """``(nick, password)`` from an ``Authorization: Basic`` header, else None."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        nick, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode(
            "utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (nick, password) if sep and nick else None


def forwarded_client(header) -> str | None:
    """The address a proxy appended last to ``X-Forwarded-For``, if it is one.

    Only the last entry is the trusted proxy's own word; earlier ones are
    whatever the client claimed.
    """
    if not header:
        return None
    candidate = header.rsplit(",", 1)[-1].strip()
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


# The subprotocols this server speaks (RFC 6455 section 1.9): wire.WEBSOCKET and wire.PROTOBUF.
JSON_V1 = "chatd.json.v1"
PROTOBUF_V1 = "chatd.protobuf.v1"
SUBPROTOCOLS = (JSON_V1, PROTOBUF_V1)


def choose_subprotocol(offered) -> str | None:
    """The first of the client's subprotocols that we speak; None when it offered none
    (JSON, and no header in the answer); ConnectionDeny when we speak none of them."""
    if not offered:
        return None
    for name in offered:
        if name in SUBPROTOCOLS:
            return name
    names = ", ".join(offered)[:200]
    raise ConnectionDeny(ConnectionDeny.BAD_REQUEST,
                         f"unsupported WebSocket subprotocol ({names}); this server speaks "
                         f"{JSON_V1} and {PROTOBUF_V1}")


# Autobahn lets a server close with 1000 or an application code; the reason
# (and the "bye" event before it) says why.
NORMAL = 1000

# Not a class attribute: Autobahn logs every frame through ``self.log`` at
# debug level, and its own txaio logger is what filters that out.
log = Logger()



def _decode_json(payload: bytes) -> dict:
    """One text frame's request; ChatError ``invalid_utf8`` or as parsed."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ChatError("invalid_utf8", "text frames must be UTF-8") from None
    return parse_json_request(text)


_TEXT_FRAME = ChatError("text_frame", "this connection speaks chatd.protobuf.v1: "
                        "send one Request per binary frame")
_BINARY_FRAME = ChatError("binary_frame", "send JSON in text frames, not binary")

class ChatWebSocketProtocol(SinkBase, WebSocketServerProtocol):
    wire_format = staticmethod(wire.WEBSOCKET)

    _credentials = None
    _forwarded_for = None
    binary = False  # chatd.protobuf.v1: binary frames both ways

    @property
    def service(self):
        return self.factory.service

    def onConnect(self, request):
        self.check_handshake(request)
        chosen = choose_subprotocol(request.protocols)  # 400 for none we speak
        if chosen == PROTOBUF_V1:
            self.binary = True
            self.wire_format = wire.PROTOBUF  # before open_session: the session's format
        return chosen

    def check_handshake(self, request) -> None:
        """What every WebSocket front end on the HTTP port checks and keeps of the
        upgrade request, whatever its subprotocols (IRC over WebSocket too)."""
        # Connect-time login: HTTP Basic credentials on the upgrade request.
        self._credentials = basic_credentials(request.headers.get("authorization"))
        self._forwarded_for = forwarded_client(request.headers.get("x-forwarded-for"))
        self.factory.origins.check(request, self.transport)  # 403 for a foreign page

    def onOpen(self):
        # twisted.web's HTTP channel registered itself as the transport's producer
        # before the upgrade (TCP and TLS transports alike); the connection is ours now.
        try:
            self.transport.unregisterProducer()
        except RuntimeError:  # test transports refuse when none is registered
            pass
        self.start_output(self.transport, self.factory.flusher)
        host = self.peer_host()
        if not self._count_forwarded(host) or not self.open_session(host):
            return
        if self._credentials is not None:
            nick, password = self._credentials
            self._credentials = None
            self.factory.dispatcher.handle(self.session, {
                "type": "login", "id": CONNECT_LOGIN_ID, "nick": nick, "password": password})

    _forwarded_key = None

    def _count_forwarded(self, host: str) -> bool:
        """Behind a trusted proxy (not counted per address at accept), count the
        client the proxy names; over the limit it is refused like any other."""
        peer = getattr(self.transport.getPeer(), "host", None)
        admission = self.factory.admission
        if host == peer or peer not in admission.exempt:
            return True
        try:
            self._forwarded_key = admission.claim_address(host)
        except ChatError as e:
            self.refuse(e)
            return False
        return True

    def connection_gone(self, reason="connection closed"):
        key, self._forwarded_key = self._forwarded_key, None
        if key is not None:
            self.factory.admission.release_address(key)
        super().connection_gone(reason)

    def peer_host(self) -> str:
        """The client's address: behind a trusted proxy, the one the proxy reports,
        so per-address limits count people rather than the proxy."""
        peer = self.transport.getPeer()
        host = getattr(peer, "host", str(peer))
        if self._forwarded_for is not None and host in self.factory.trusted_proxies:
            return self._forwarded_for
        return host

    def onMessage(self, payload, isBinary):
        session = self.session
        if session is None or not session.attached:
            return
        dispatcher = self.factory.dispatcher
        if isBinary != self.binary:
            dispatcher.refuse(session, _TEXT_FRAME if self.binary else _BINARY_FRAME)
            return
        try:
            req = decode_request(payload) if self.binary else _decode_json(payload)
        except ChatError as e:
            dispatcher.refuse(session, e)
            if e.code == "invalid_utf8":  # RFC 6455 says fail the connection
                self.service.drop(session, "invalid UTF-8")
            return
        dispatcher.handle(session, req)

    def onPong(self, payload):
        if self.session is not None:
            self.service.touch(self.session)

    def onClose(self, wasClean, code, reason):
        self.connection_gone(reason or "connection closed")

    # -- the single writer ---------------------------------------------------------
    def sendData(self, data, sync=False, chopsize=None):
        out = self.out
        if out is None or sync or chopsize:
            # The opening handshake (before the queue exists), or Autobahn's
            # testing modes; chatd uses neither mode.
            super().sendData(data, sync, chopsize)
        else:
            # Pongs and close frames answer what this peer sent: counted as replies
            # (chatd.outbuf.write_counted), so a ping flood is held to the cap too.
            out.write_counted(data)

    def _closeConnection(self, abort=False):
        # Autobahn closing the TCP connection (after the close handshake, or on
        # a protocol error; its dropConnection has unregistered our queue as
        # the producer, which a TLS transport needs to shut down): what is
        # queued goes first.
        if self.out is not None and not abort:
            self.out.seal()
        super()._closeConnection(abort)

    # -- IClientSink -------------------------------------------------------------
    def send_ping(self):
        self.sendPing()

    def before_close(self, reason):
        # A close reason must fit in a control frame (123 bytes).
        self.sendClose(NORMAL, reason.encode("utf-8")[:120].decode("utf-8", "ignore"))

    def close_transport(self):
        # Autobahn closes the TCP connection once the peer answers our close
        # frame, or after closeHandshakeTimeout; SinkBase's timer backs it up.
        pass


class ChatWebSocketFactory(WebSocketServerFactory):
    protocol = ChatWebSocketProtocol

    def __init__(self, service, dispatcher, url=None, trusted_proxies=(), admission=None,
                 allowed_origins=(), flusher=None):
        # server=None: no "Server: AutobahnPython/<version>" in handshake answers.
        super().__init__(url, server=None)
        self.service = service
        self.dispatcher = dispatcher
        self.flusher = flusher
        self.trusted_proxies = frozenset(trusted_proxies)
        self.origins = OriginPolicy(allowed_origins, self.trusted_proxies)
        self.admission = admission or Admission.from_limits(service.limits,
                                                            self.trusted_proxies)
        limits = service.limits
        self.setProtocolOptions(
            maxFramePayloadSize=limits.max_frame,
            maxMessagePayloadSize=limits.max_frame,
            # We decode ourselves so the client gets an error frame before the close.
            utf8validateIncoming=False,
            # Heartbeats are the service's job, one LoopingCall for every front end.
            autoPingInterval=0,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=3,
            # Fail with a close frame (1009 for an oversized frame, 1002 for a
            # protocol error) so the client learns why; the close handshake
            # timeout still drops a peer that never answers it.
            failByDrop=False,
            webStatus=False,  # Autobahn's status page names its version
        )
