"""Unit-test helpers: a chat service on a fake clock, and in-memory line and
WebSocket clients (the ``make_chat`` and ``ws`` fixtures).

Nothing here opens a socket or reads the real clock.
"""

import json

import pytest
import txaio
from fakes import CLOSE, TEXT, InlinePasswords, close_code, frame, parse_frames
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from chatd.dispatch import Dispatcher
from chatd.limits import Limits
from chatd.protocols.line import LineFactory
from chatd.protocols.websocket import ChatWebSocketFactory
from chatd.service import ChatService

START = 1_700_000_000.0  # the fake clock's epoch, so timestamps are plausible


class StringClient:
    """One connection of a front end's factory over a StringTransportWithDisconnection;
    lines it sends end in ``EOL``, lines it reads in CRLF."""

    EOL = b"\n"

    def __init__(self, factory, host, port):
        self.proto = factory.buildProtocol(None)
        self.transport = StringTransportWithDisconnection(
            peerAddress=IPv4Address("TCP", host, port))
        self.transport.protocol = self.proto
        self.proto.makeConnection(self.transport)

    @property
    def session(self):
        return self.proto.session

    def send(self, *lines: str, eol: bytes | None = None) -> None:
        eol = self.EOL if eol is None else eol
        for line in lines:
            self.proto.dataReceived(line.encode("utf-8") + eol)

    def raw(self) -> bytes:
        """Everything written since the last read, then forget it."""
        data = self.transport.value()
        self.transport.clear()
        return data

    def lines(self) -> list[str]:
        data = self.raw()
        assert data == b"" or data.endswith(b"\r\n"), data
        return data.decode("utf-8").split("\r\n")[:-1]


class LineClient(StringClient):
    """One line-protocol connection."""

    def __init__(self, chat, host="10.0.0.1", port=40000):
        super().__init__(LineFactory(chat.service, chat.dispatcher), host, port)

    def send_json(self, obj) -> None:
        self.send(json.dumps(obj))

    def json(self) -> list[dict]:
        return [json.loads(line) for line in self.lines()]

    @property
    def open(self) -> bool:
        return self.transport.connected and not self.transport.disconnecting


class Chat:
    """A ChatService with its dispatcher on a task.Clock."""

    def __init__(self, **limits):
        # Most tests read each join, part and quit notice alone, as a quiet room
        # sends them; the coalescing of a storm (tests/test_notices.py) asks
        # for its window.
        limits.setdefault("coalesce_window", 0)
        self.clock = Clock()
        self.clock.advance(START)
        self.service = ChatService(Limits(**limits), clock=self.clock,
                                   passwords=InlinePasswords())
        self.dispatcher = Dispatcher(self.service)
        self._port = 40000

    def line(self, nick=None, room=None, host="10.0.0.1", json_mode=False,
             fresh=True) -> LineClient:
        """A connected line client, optionally in JSON mode, registered and in a room;
        with ``fresh`` its output so far (greeting, acks) is discarded."""
        self._port += 1
        client = LineClient(self, host, self._port)
        if nick is not None:
            client.send(f"/nick {nick}")
        if room is not None:
            client.send(f"/join {room}")
        if json_mode:
            client.send("/json")
        if fresh:
            client.raw()
        return client


@pytest.fixture
def make_chat():
    """Build a Chat with non-default limits: ``make_chat(burst=3)``."""
    return Chat


@pytest.fixture
def chat():
    return Chat()


# -- WebSocket: hand-made frames over a StringTransport; Autobahn's timers run on
# the chat's Clock (txaio's loop), so nothing waits for real time.
HANDSHAKE = (b"GET /ws HTTP/1.1\r\n"
             b"Host: localhost:8080\r\n"
             b"Upgrade: websocket\r\n"
             b"Connection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")

class WSClient:
    def __init__(self, chat, factory, host="10.0.0.2", headers=b""):
        self.chat = chat
        self.proto = factory.buildProtocol(IPv4Address("TCP", host, 50000))
        self.transport = StringTransportWithDisconnection(
            peerAddress=IPv4Address("TCP", host, 50000))
        self.transport.protocol = self.proto
        self.proto.makeConnection(self.transport)
        self.proto.dataReceived(HANDSHAKE[:-2] + headers + b"\r\n")
        head, _, rest = self.transport.value().partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        self.transport.clear()
        self.transport.write(rest)

    @property
    def session(self):
        return self.proto.session

    def send(self, obj) -> None:
        self.proto.dataReceived(frame(json.dumps(obj).encode()))

    def send_frame(self, payload: bytes, opcode=TEXT) -> None:
        self.proto.dataReceived(frame(payload, opcode))

    def frames(self) -> list[tuple[int, bytes]]:
        data = self.transport.value()
        self.transport.clear()
        return parse_frames(data)

    def events(self) -> list[dict]:
        out = []
        for opcode, payload in self.frames():
            assert opcode == TEXT, (opcode, payload)
            out.append(json.loads(payload))
        return out

    def request(self, obj) -> list[dict]:
        self.events()
        self.send(obj)
        return self.events()



def closes_1009_over_max_frame(chat, client) -> None:
    """A message bigger than ``max_frame=256`` closes with 1009 and frees the session,
    whatever the subprotocol (``client.send`` frames it)."""
    client.events()
    client.send({"type": "message", "text": "x" * 300})
    [(op, payload)] = client.frames()
    assert (op, close_code(payload)) == (CLOSE, 1009)
    client.send_frame(payload[:2], CLOSE)
    assert not client.transport.connected
    assert len(chat.service.sessions) + len(chat.service._closing) == 0

@pytest.fixture
def ws_factories(make_chat):
    """``ws_factories(**limits)`` -> (chat, WebSocket factory), Autobahn on the chat's Clock."""
    old_loop = txaio.config.loop

    def build(trusted_proxies=(), **limits):
        chat = make_chat(**limits)
        txaio.config.loop = chat.clock
        return chat, ChatWebSocketFactory(chat.service, chat.dispatcher, "ws://localhost:8080/ws",
                                          trusted_proxies=trusted_proxies)

    yield build
    txaio.config.loop = old_loop


@pytest.fixture
def ws(ws_factories):
    """``ws(**limits)`` -> (chat, connect); connect() opens a WebSocket client."""

    def build(**limits):
        chat, factory = ws_factories(**limits)
        return chat, lambda **kw: WSClient(chat, factory, **kw)

    return build


@pytest.fixture
def logged():
    """Every log event emitted during the test."""
    from twisted.logger import globalLogPublisher
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)
