"""An IRC client over a StringTransport, for the IRC front end's unit tests."""

from conftest import StringClient

from chatd.irc.message import parse
from chatd.protocols.irc import IrcFactory


class IrcClient(StringClient):
    EOL = b"\r\n"

    def __init__(self, factory, host="10.0.0.3", port=6000):
        super().__init__(factory, host, port)

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
