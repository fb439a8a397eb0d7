"""The IRC front end on TCP: RFC 1459/2812 with IRCv3 capabilities.

The IRC logic is transport-free (chatd.irc); this module only frames lines.
Lines end in CRLF; LF alone is accepted.  A line longer than 512 bytes
(tags aside) is refused with 417 and the rest of it skipped.

Embedding IRC in another transport (the IRCv3 WebSocket one, say):

1. make the protocol a ``chatd.sink.SinkBase`` and build one shared
   ``IrcServer(service, dispatcher, framer)`` per listener, where ``framer``
   turns a list of IRC lines (str, no line ending) into the bytes your
   transport writes (``chatd.irc.render.crlf`` here; one text frame per
   line on a WebSocket);
2. on connection: ``self.start_output(transport, flusher)``, then
   ``self.irc = IrcConnection(self, server)`` (it sets ``self.wire_format``),
   then ``self.write = self.irc.write`` and ``self.write_reply =
   self.irc.write_reply`` (the chatd session captures ``write`` when it
   opens), then ``self.open_session(host)``;
3. hand each received line, as text without its line ending, to
   ``self.irc.line_received(text)``;
4. borrow ``IrcSink``'s ``send_ping``, ``refuse`` and ``switch_format``
   (mix it in), and call ``self.connection_gone(reason)`` when the
   transport is lost.
"""

from twisted.internet.protocol import Factory

from chatd.errors import ChatError
from chatd.irc.conn import IrcConnection, IrcServer
from chatd.irc.message import MAX_LINE, MAX_TAGS
from chatd.protocols.line import SkippingLineReceiver
from chatd.sink import SinkBase


class IrcSink(SinkBase):
    """What an IRC connection needs from a sink, whatever the transport."""

    irc = None

    @property
    def room_write(self):
        """What a room's broadcast calls (chatd.session): the queue's own write,
        as for a line member.  Room broadcasts are all bytes for every member (the
        sender is left out of its message by the room when it did not ask for
        echo-message), so the per-member checks of ``IrcConnection.write`` are for
        what reaches one session alone (private messages, away, replies)."""
        return self.out.write

    def send_ping(self) -> None:
        self.out.write(self.irc.ping_line())

    def refuse(self, error: ChatError) -> None:
        """Not admitted: an ERROR line, then the close."""
        self.out.write(self.irc.error_line(error.message))
        self._why_gone = error.message
        self._finish(error.message)

    def switch_format(self, name: str) -> None:
        raise ChatError("unknown_type", "IRC has one wire format")


class IrcProtocol(IrcSink, SkippingLineReceiver):
    # Tags, the 512 bytes of a line and a CR; longer is refused with 417.
    MAX_LENGTH = MAX_TAGS + 1 + MAX_LINE

    def __init__(self, factory):
        self.factory = factory
        self.service = factory.service

    def connectionMade(self):
        self.start_output(self.transport, self.factory.flusher)
        self.irc = IrcConnection(self, self.factory.server)
        self.write = self.irc.write
        self.write_reply = self.irc.write_reply
        self.watch_handshake()
        self.open_session(self.transport.getPeer().host)

    def connectionLost(self, reason):
        self.connection_gone("connection closed")

    def line_too_long(self):
        if self.session is not None and self.session.attached:
            self.irc.too_long()

    def lineReceived(self, line):
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("latin-1")  # what IRC clients without UTF-8 send
        self.irc.line_received(text)


class IrcFactory(Factory):
    def __init__(self, service, dispatcher, flusher=None):
        self.service = service
        self.dispatcher = dispatcher
        self.flusher = flusher
        self.server = IrcServer(service, dispatcher)

    def buildProtocol(self, addr):
        return IrcProtocol(self)


def irc_refusal(error: ChatError) -> bytes:
    """What a connection the admission refuses reads before the close (chatd.admission)."""
    return f"ERROR :Closing link: {error.message}\r\n".encode()
