"""The TCP line front end: readable text for people, JSON lines for scripts.

Input lines may end in LF or CRLF; every server line ends in CRLF.  ``/json``
switches the connection to one JSON object per line, with the WebSocket schema.
"""

import json
import math
import re

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from chatd import commands, wire
from chatd.errors import ChatError
from chatd.events import Ack, Bye, Error, Ping
from chatd.interfaces import IClientSink
from chatd.outbuf import OutputQueue


def _not_a_number(text):
    # Python reads NaN, Infinity and 1e999, but they are not JSON: echoed back in
    # an id, they would make our own output unreadable to every other parser.
    raise ChatError("invalid_json", f"not valid JSON: {text[:20]} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        _not_a_number(text)
    return value


_decode = json.JSONDecoder(parse_constant=_not_a_number, parse_float=_finite).decode


def parse_json_request(text: str) -> dict:
    try:
        req = _decode(text)
    except json.JSONDecodeError as e:
        raise ChatError("invalid_json", f"not valid JSON: {e.msg} at column {e.colno}")
    except ValueError:
        # int() refuses more than sys.get_int_max_str_digits() digits.
        raise ChatError("invalid_json", "not valid JSON: a number too long to read")
    if not isinstance(req, dict):
        raise ChatError("bad_request", "a request is a JSON object with a \"type\"")
    if _SURROGATE_ESCAPE.search(text):
        # A lone "\udc80" decodes to a str that cannot be encoded again: it would
        # fail later in the store or in our own JSON output, far from its sender.
        if not _encodable(req):
            rid = req.get("id")
            raise ChatError("invalid_text", "strings must be valid Unicode: a \\u escape "
                            "of half a surrogate pair is not",
                            rid if _encodable(rid) else None)
    return req


def _encodable(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Only an escape can smuggle a surrogate in (the line is already valid UTF-8),
# so the full check runs only for input that has one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@implementer(IClientSink)
class LineProtocol(LineReceiver):
    delimiter = b"\n"
    log = Logger()

    session = None
    out = None
    wire_format = staticmethod(wire.TEXT)
    _discarding = False
    _leftover = b""

    def __init__(self, service, dispatcher):
        self.service = service
        self.dispatcher = dispatcher
        self.MAX_LENGTH = service.limits.max_line

    # -- connection --------------------------------------------------------
    def connectionMade(self):
        set_nodelay = getattr(self.transport, "setTcpNoDelay", None)
        if set_nodelay is not None:
            # Chat lines are small and latency matters more than packet count.
            set_nodelay(True)
        self.out = OutputQueue(self.transport, self.service.limits.send_queue,
                               self._overflow, self.service.clock)
        self.write = self.out.write
        try:
            self.session = self.service.connect(self, self.transport.getPeer().host)
        except ChatError as e:
            self.transport.write(wire.TEXT(Error(e.code, e.message)))
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if self.session is not None:
            self.service.disconnected(self.session, "connection closed")

    # -- input ---------------------------------------------------------------
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
        self._refuse(ChatError("line_too_long",
                               f"lines are at most {self.MAX_LENGTH} bytes; line ignored"))
        end = line.find(b"\n")
        if end < 0:
            self._discarding = True
        else:
            self._leftover = line[end + 1:]

    def lineReceived(self, line):
        if self.session is None or not self.session.attached:
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
                if not text.strip():
                    self.service.touch(self.session)
                    return
                req = parse_json_request(text)
            else:
                req = commands.parse(text)
                if req is None:
                    self.service.touch(self.session)
                    return
        except ChatError as e:
            self._refuse(e)
            return
        if req.get("type") == "json":
            self.dispatcher.in_order(self.session, self._json_mode, req)
        else:
            self.dispatcher.handle(self.session, req)

    def _refuse(self, error: ChatError) -> None:
        if self.session is not None and self.session.attached:
            self.dispatcher.refuse(self.session, error)

    def _json_mode(self, req: dict) -> None:
        try:
            self.service.admit(self.session)
        except ChatError as e:
            if self.session.attached:
                self.session.send(Error(e.code, e.message, req.get("id"), "json"))
            return
        self.wire_format = wire.JSONL
        self.service.set_format(self.session, wire.JSONL)
        self.session.send(Ack("json", req.get("id"), {"mode": "json"}))

    # -- IClientSink -----------------------------------------------------------
    def send_ping(self):
        self.write(self.wire_format(Ping(self.service.clock.seconds())))

    def close_session(self, reason):
        self.out.write(self.wire_format(Bye(reason)))
        self.out.flush()
        self.transport.loseConnection()

    def abort(self):
        self.transport.abortConnection()

    def _overflow(self):
        self.service.overflowed(self.session, self)


class LineFactory(Factory):
    def __init__(self, service, dispatcher):
        self.service = service
        self.dispatcher = dispatcher

    def buildProtocol(self, addr):
        return LineProtocol(self.service, self.dispatcher)
