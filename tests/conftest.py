"""Unit-test helpers: a chat service on a fake clock and in-memory line clients.

Nothing here opens a socket or reads the real clock.
"""

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from chatd.dispatch import Dispatcher
from chatd.limits import Limits
from chatd.protocols.line import LineProtocol
from chatd.service import ChatService

START = 1_700_000_000.0  # the fake clock's epoch, so timestamps are plausible


class LineClient:
    """One line-protocol connection over a StringTransportWithDisconnection."""

    def __init__(self, chat, host="10.0.0.1", port=40000):
        self.proto = LineProtocol(chat.service, chat.dispatcher)
        self.transport = StringTransportWithDisconnection(
            peerAddress=IPv4Address("TCP", host, port))
        self.transport.protocol = self.proto
        self.proto.makeConnection(self.transport)

    @property
    def session(self):
        return self.proto.session

    def send(self, *lines: str, eol: bytes = b"\n") -> None:
        for line in lines:
            self.proto.dataReceived(line.encode("utf-8") + eol)

    def send_json(self, obj) -> None:
        self.send(json.dumps(obj))

    def raw(self) -> bytes:
        """Everything written since the last read, then forget it."""
        data = self.transport.value()
        self.transport.clear()
        return data

    def lines(self) -> list[str]:
        data = self.raw()
        assert data == b"" or data.endswith(b"\r\n"), data
        return data.decode("utf-8").split("\r\n")[:-1]

    def json(self) -> list[dict]:
        return [json.loads(line) for line in self.lines()]

    @property
    def open(self) -> bool:
        return self.transport.connected and not self.transport.disconnecting


class Chat:
    """A ChatService with its dispatcher on a task.Clock."""

    def __init__(self, **limits):
        self.clock = Clock()
        self.clock.advance(START)
        self.service = ChatService(Limits(**limits), clock=self.clock)
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
