"""An IRC client over a StringTransport, for the IRC front end's unit tests."""

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransportWithDisconnection

from chatd.irc.message import parse
from chatd.protocols.irc import IrcFactory


class IrcClient:
    def __init__(self, factory, host="10.0.0.3", port=6000):
        self.proto = factory.buildProtocol(None)
        self.transport = StringTransportWithDisconnection(
            peerAddress=IPv4Address("TCP", host, port))
        self.transport.protocol = self.proto
        self.proto.makeConnection(self.transport)

    @property
    def session(self):
        return self.proto.session

    def send(self, *lines: str, eol: bytes = b"\r\n") -> None:
        for line in lines:
            self.proto.dataReceived(line.encode("utf-8") + eol)

    def raw(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def lines(self) -> list[str]:
        data = self.raw()
        assert data == b"" or data.endswith(b"\r\n"), data
        return data.decode("utf-8").split("\r\n")[:-1]

    def parsed(self) -> list:
        return [parse(line) for line in self.lines()]

    def commands(self) -> list:
        """(command, params) of every line since the last read."""
        return [(m.command, m.params) for m in self.parsed()]

    def register(self, nick: str, *caps: str) -> list:
        if caps:
            self.send("CAP LS 302", "CAP REQ :" + " ".join(caps))
        self.send(f"NICK {nick}", f"USER {nick} 0 * :{nick.title()} Example")
        if caps:
            self.send("CAP END")
        return self.lines()


class IrcChat:
    """IRC clients on a tests.conftest.Chat, each connection from its own port."""

    def __init__(self, chat):
        self.chat = chat
        self.factory = IrcFactory(chat.service, chat.dispatcher)
        self._port = 6000

    def client(self, nick=None, *rooms, caps=(), host="10.0.0.3") -> IrcClient:
        self._port += 1
        client = IrcClient(self.factory, host, self._port)
        if nick is not None:
            client.register(nick, *caps)
        for room in rooms:
            client.send(f"JOIN {room}")
        client.raw()
        return client
