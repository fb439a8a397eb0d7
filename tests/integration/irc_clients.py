"""Blocking IRC clients for driving a real chatd: raw TCP and IRC over WebSocket.

A line read is an ``Irc`` (tags, source, command, params); ``expect`` takes a
command or numeric (``"PRIVMSG"``, ``"001"``), a substring of the raw line
(anything with a space or a colon in it), or a predicate.  Server PINGs are
answered at once and never returned.  Both keep every raw line in ``seen``.
"""

import base64
import ssl
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import websocket

from .clients import DEFAULT_TIMEOUT, LineClient, _Expecting, next_data_frame


@dataclass(frozen=True)
class Irc:
    raw: str
    command: str
    params: tuple = ()
    source: str | None = None
    tags: dict = field(default_factory=dict)

    @property
    def nick(self) -> str | None:
        """The source's nick (``nick!user@host`` -> ``nick``)."""
        return self.source.partition("!")[0] if self.source else None

    @property
    def text(self) -> str | None:
        """The last parameter (a message's text, a numeric's description)."""
        return self.params[-1] if self.params else None


def parse(raw: str) -> Irc:
    """A server line, parsed independently of chatd's own parser."""
    rest = raw
    tags = {}
    if rest.startswith("@"):
        head, _, rest = rest.partition(" ")
        for item in head[1:].split(";"):
            key, _, value = item.partition("=")
            tags[key] = value
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
    params = []
    command, _, rest = rest.partition(" ")
    while rest:
        if rest.startswith(":"):
            params.append(rest[1:])
            break
        param, _, rest = rest.partition(" ")
        if param:
            params.append(param)
    return Irc(raw, command.upper(), tuple(params), source, tags)


def _irc_matcher(want):
    if callable(want):
        return lambda m: isinstance(m, Irc) and want(m)
    if " " in want or ":" in want:
        return lambda m: isinstance(m, Irc) and want in m.raw
    return lambda m: isinstance(m, Irc) and m.command == want


def sasl_plain(account: str, password: str) -> str:
    return base64.b64encode(f"\0{account}\0{password}".encode()).decode()


class _IrcSession:
    """What both transports share: registration, CAP, SASL, expect by command."""

    nick = None

    def expect(self, want, timeout: float | None = None) -> Irc:
        return super().expect(_irc_matcher(want), timeout)

    def absent(self, want, within: float = 0.3) -> None:
        """Assert nothing matching ``want`` arrives within ``within`` seconds."""
        match = _irc_matcher(want)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.poll(max(0.0, deadline - time.monotonic()))
        hits = [m for m in self.backlog if match(m)]
        assert not hits, f"unexpected {hits}"

    def sync(self) -> None:
        """Round trip: everything the server sent before now is in the backlog."""
        token = f"sync{time.monotonic_ns()}"
        self.send(f"PING :{token}")
        self.expect(lambda m: m.command == "PONG" and m.text == token)

    def register(self, nick: str, *, caps=(), sasl=None, password=None,
                 user: str | None = None) -> Irc:
        """Register as ``nick``; ``caps`` asked for with CAP LS 302 / REQ; ``sasl``
        (account, password) through AUTHENTICATE PLAIN.  Returns the 001."""
        if caps or sasl:
            self.send("CAP LS 302")
        if password is not None:
            self.send(f"PASS :{password}")
        self.send(f"NICK {nick}")
        self.send(f"USER {user or nick} 0 * :{nick} realname")
        if caps or sasl:
            ls = self.expect(lambda m: m.command == "CAP" and m.params[1:2] == ("LS",))
            offered = {c.partition("=")[0] for c in ls.text.split()}
            want = list(caps) + (["sasl"] if sasl and "sasl" not in caps else [])
            missing = set(want) - offered
            assert not missing, f"server does not offer {missing}: {ls.raw}"
            self.send(f"CAP REQ :{' '.join(want)}")
            ack = self.expect(lambda m: m.command == "CAP" and m.params[1:2] in (("ACK",),
                                                                              ("NAK",)))
            assert ack.params[1] == "ACK", ack.raw
            assert set(ack.text.split()) == set(want), ack.raw
            if sasl:
                self.send("AUTHENTICATE PLAIN")
                self.expect(lambda m: m.command == "AUTHENTICATE" and m.params == ("+",))
                self.send(f"AUTHENTICATE {sasl_plain(*sasl)}")
                self.expect("903")
            self.send("CAP END")
        welcome = self.expect("001")
        self.nick = welcome.params[0]
        self.expect(lambda m: m.command in ("376", "422"))  # end of MOTD: registered
        return welcome

    def join(self, room: str) -> set:
        """JOIN and wait for its NAMES; the nicks in the room.  Our JOIN line and
        its NAMES are consumed; whatever else arrived meanwhile is kept."""
        key = room.lower()
        self.send(f"JOIN {room}")
        self.expect(lambda m: m.command == "JOIN" and m.nick == self.nick
                    and m.params[0].lower() == key)
        self.expect(lambda m: m.command == "366" and m.params[1].lower() == key)
        names = [m for m in self.backlog if m.command == "353" and m.params[2].lower() == key]
        self.backlog = [m for m in self.backlog if m not in names]
        return {n.lstrip("~&@%+") for m in names for n in m.text.split()}

    def privmsg(self, target: str, text: str) -> None:
        self.send(f"PRIVMSG {target} :{text}")

    def quit(self, reason: str = "bye") -> list:
        self.send(f"QUIT :{reason}")
        return self.expect_closed()


class IrcClient(_IrcSession, LineClient):
    """An IRC client on a raw socket (CRLF lines); over TLS with ``tls_ca`` (the
    CA file that must have signed the server's certificate for 127.0.0.1)."""

    def __init__(self, port: int, *, tls_ca=None, **kw):
        super().__init__(port, **kw)
        if tls_ca is not None:
            ctx = ssl.create_default_context(cafile=str(tls_ca))
            self.sock = ctx.wrap_socket(self.sock, server_hostname="127.0.0.1")

    def read(self, timeout: float | None = None) -> Irc:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            raw = self._read_raw_line(deadline)
            assert raw.endswith(b"\r\n"), f"server line not ended by CRLF: {raw!r}"
            msg = parse(raw[:-2].decode("utf-8"))
            self.seen.append(msg)
            if msg.command == "PING":
                self.pings += 1
                if not self.auto_pong:
                    return msg
                self.send("PONG" + (f" :{msg.text}" if msg.params else ""))
                continue
            return msg


class IrcWSClient(_IrcSession, _Expecting):
    """IRC over WebSocket (IRCv3): one line per text frame, no CRLF, at ``path``."""

    def __init__(self, port: int, *, path: str = "/irc",
                 subprotocols=("text.ircv3.net",), timeout: float = DEFAULT_TIMEOUT,
                 tls_ca=None, **options):
        scheme = "ws"
        if tls_ca is not None:
            scheme = "wss"
            options["sslopt"] = {"ca_certs": str(tls_ca)}
        self.ws = websocket.create_connection(
            f"{scheme}://127.0.0.1:{port}{path}", timeout=timeout,
            subprotocols=list(subprotocols) if subprotocols else None, **options)
        self.subprotocol = self.ws.getsubprotocol()
        self.binary = self.subprotocol == "binary.ircv3.net"
        self.timeout = timeout
        self.seen = []
        self.frames = []  # (opcode, payload) of every data frame
        self.backlog = []
        self.pings = 0
        self.close_code = None
        self.close_reason = None
        self.closed = False

    def send(self, line: str) -> None:
        if self.binary:
            self.ws.send(line.encode("utf-8"), websocket.ABNF.OPCODE_BINARY)
        else:
            self.ws.send(line)

    def read(self, timeout: float | None = None) -> Irc:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            opcode, data = next_data_frame(self, deadline)
            self.frames.append((opcode, data))
            data = data if isinstance(data, bytes) else data.encode()
            assert b"\r" not in data and b"\n" not in data, f"CR/LF in a frame: {data!r}"
            msg = parse(data.decode("utf-8"))
            self.seen.append(msg)
            if msg.command == "PING":
                self.send("PONG" + (f" :{msg.text}" if msg.params else ""))
                continue
            return msg

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            # Best effort: the server may already have gone.
            self.ws.shutdown()


@contextmanager
def closing_all(make):
    """``start(*args, **kw)``: ``make(*args, **kw)``, every client made closed on the way out
    (the fixtures that run real IRC clients, irssi and WeeChat)."""
    clients = []

    def start(*args, **kw):
        client = make(*args, **kw)
        clients.append(client)
        return client

    try:
        yield start
    finally:
        for client in clients:
            client.close()
