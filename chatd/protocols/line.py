"""The TCP line front end: readable text for people, JSON lines for scripts.

Input lines may end in LF or CRLF; every server line ends in CRLF.  ``/json``
switches the connection to one JSON object per line, with the WebSocket schema.
"""

from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

from chatd import commands, wire
from chatd.errors import ChatError
from chatd.events import Ping
from chatd.jsonreq import parse_json_request
from chatd.sink import SinkBase

FORMATS = {"text": wire.TEXT, "json": wire.JSONL}


class SkippingLineReceiver(LineReceiver):
    """LF-delimited lines; a line over ``MAX_LENGTH`` is reported once
    (``line_too_long``) and skipped to its end, and what follows it is kept.
    The line front ends' framing: this one and IRC's (chatd.protocols.irc)."""

    delimiter = b"\n"
    _discarding = False
    _leftover = b""

    def line_too_long(self) -> None:
        """Tell the peer its line was refused (the front end's own way)."""

    def dataReceived(self, data):
        while data:
            if self._discarding:
                # The rest of an over-long line: skip to its end.
                end = data.find(b"\n")
                if end < 0:
                    return
                self._discarding = False
                data = data[end + 1:]
                continue
            self._leftover = b""
            super().dataReceived(data)
            data, self._leftover = self._leftover, b""

    def lineLengthExceeded(self, line):
        # LineReceiver hands over its whole buffer and clears it: refuse the long
        # line, then keep whatever follows it (dataReceived feeds it back in).
        self.line_too_long()
        end = line.find(b"\n")
        if end < 0:
            self._discarding = True
        else:
            self._leftover = line[end + 1:]


class LineProtocol(SinkBase, SkippingLineReceiver):
    wire_format = staticmethod(wire.TEXT)

    def __init__(self, factory):
        # The factory holds what every connection shares: one reference here
        # instead of several per idle connection.
        self.factory = factory
        self.MAX_LENGTH = factory.service.limits.max_line

    @property
    def service(self):
        return self.factory.service

    @property
    def dispatcher(self):
        return self.factory.dispatcher

    # -- connection --------------------------------------------------------
    def connectionMade(self):
        self.start_output(self.transport, self.factory.flusher)
        self.watch_handshake()
        self.open_session(self.transport.getPeer().host)

    def connectionLost(self, reason):
        self.connection_gone("connection closed")

    # -- input ---------------------------------------------------------------
    def line_too_long(self):
        self._refuse(ChatError("line_too_long",
                               f"lines are at most {self.MAX_LENGTH} bytes; line ignored"))

    def lineReceived(self, line):
        session = self.session
        if session is None or not session.attached:
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse(ChatError("invalid_utf8", "input must be UTF-8; line ignored"))
            return
        try:
            if self.wire_format is wire.JSONL:
                req = parse_json_request(text) if text.strip() else None
            else:
                req = commands.parse(text)
        except ChatError as e:
            self._refuse(e)
            return
        if req is None:
            self.service.touch(session)  # a blank line: proof of life only
        else:
            self.dispatcher.handle(session, req)

    def _refuse(self, error: ChatError) -> None:
        if self.session is not None and self.session.attached:
            self.dispatcher.refuse(self.session, error)

    # -- IClientSink -----------------------------------------------------------
    def send_ping(self):
        self.write(self.wire_format(Ping(self.service.clock.seconds())))

    def switch_format(self, name):
        fmt = FORMATS.get(name)
        if fmt is None:
            super().switch_format(name)
        self.wire_format = fmt
        self.service.set_format(self.session, fmt)


class LineFactory(Factory):
    def __init__(self, service, dispatcher, flusher=None):
        self.service = service
        self.dispatcher = dispatcher
        self.flusher = flusher

    def buildProtocol(self, addr):
        return LineProtocol(self)
