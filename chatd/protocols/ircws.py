"""IRC over WebSocket (the IRCv3 WebSocket transport) at ``/irc`` on the HTTP port.

For web IRC clients: the same IRC session as ``--irc`` (chatd.irc.conn), carried
one IRC line per WebSocket message, without CR or LF:

* subprotocol ``text.ircv3.net``: text frames, UTF-8 (chatd's text is UTF-8
  anyway); also what a client that names no subprotocol gets;
* subprotocol ``binary.ircv3.net``: the same lines in binary frames.

A client that offers only other subprotocols is refused with 400.  Everything
else is the WebSocket front end's (chatd.protocols.websocket): the output queue
and its cap, admission on the HTTP port, the origin check, trusted proxies, and
heartbeats as WebSocket pings (a browser answers them by itself).  Logging in
is IRC's (PASS or SASL); HTTP Basic credentials on the upgrade are ignored.
"""

import struct

from autobahn.websocket.types import ConnectionDeny

from chatd.errors import ChatError
from chatd.irc.conn import IrcConnection, IrcServer
from chatd.irc.message import MAX_LINE, MAX_TAGS
from chatd.protocols.irc import IrcSink
from chatd.protocols.websocket import ChatWebSocketFactory, ChatWebSocketProtocol

TEXT = "text.ircv3.net"
BINARY = "binary.ircv3.net"
# A line with the most tags a client may send; larger messages fail the connection.
MAX_MESSAGE = MAX_TAGS + MAX_LINE


def _framer(opcode: int):
    first = 0x80 | opcode  # FIN, unmasked (a server never masks)

    def frames(lines) -> bytes:
        """Each line (str, no CRLF) as one complete WebSocket message."""
        out = []
        for text in lines:
            data = text.encode("utf-8")
            n = len(data)
            if n < 126:
                out.append(bytes((first, n)))
            elif n < 65536:
                out.append(struct.pack("!BBH", first, 126, n))
            else:
                out.append(struct.pack("!BBQ", first, 127, n))
            out.append(data)
        return b"".join(out)
    return frames


text_frames = _framer(0x1)
binary_frames = _framer(0x2)


class IrcWebSocketProtocol(IrcSink, ChatWebSocketProtocol):
    """IrcSink's ERROR on refusal; the WebSocket front end's everything else."""

    irc = None  # the IRC session (chatd.irc.conn.IrcConnection), from the handshake on

    def onConnect(self, request):
        self.check_handshake(request)  # the origin check; X-Forwarded-For
        self._credentials = None  # IRC logs in with PASS or SASL
        offered = request.protocols or []
        chosen = next((p for p in offered if p in self.factory.servers), None)
        if chosen is None and offered:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST,
                                 f"subprotocols supported: {TEXT}, {BINARY}")
        # Before the session exists: connecting reads its wire format and writer.
        self.irc = IrcConnection(self, self.factory.servers[chosen or TEXT])
        return chosen

    def start_output(self, transport, flusher=None) -> None:
        super().start_output(transport, flusher)
        # What the service hands this session goes through the IRC session, which
        # drops a sender's own message and answers acks and errors as numerics.
        self.write = self.irc.write

    def write_reply(self, payload: bytes) -> None:
        self.irc.write_reply(payload)

    def send_ping(self) -> None:
        # A WebSocket ping, not an IRC PING: a browser answers it by itself.
        self.sendPing()

    def onMessage(self, payload, isBinary):
        session = self.session
        if session is None or not session.attached:
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            if isBinary:  # binary.ircv3.net: bytes as on TCP (chatd.protocols.irc)
                text = payload.decode("latin-1")
            else:
                text = None
        if text is None:
            # RFC 6455 fails a connection over a text frame that is not UTF-8.
            self.factory.dispatcher.refuse(
                session, ChatError("invalid_utf8", "IRC lines must be UTF-8"))
            self.service.drop(session, "invalid UTF-8")
            return
        # One line per message; a client that ends it in CRLF anyway, or sends
        # several, is understood rather than refused.
        lines = text.split("\n")
        if len(lines) > 1 and not lines[-1]:
            lines.pop()
        for line in lines:
            if self.session is None or self.irc is None:
                return
            self.irc.line_received(line[:-1] if line.endswith("\r") else line)


class IrcWebSocketFactory(ChatWebSocketFactory):
    protocol = IrcWebSocketProtocol

    def __init__(self, service, dispatcher, **kw):
        super().__init__(service, dispatcher, **kw)
        # One IrcServer per framing: each renders a broadcast once per variant.
        self.servers = {TEXT: IrcServer(service, dispatcher, text_frames),
                        BINARY: IrcServer(service, dispatcher, binary_frames)}
        size = max(service.limits.max_frame, MAX_MESSAGE)
        self.setProtocolOptions(maxFramePayloadSize=size, maxMessagePayloadSize=size)
