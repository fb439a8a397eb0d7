"""IRC over WebSocket (chatd.protocols.ircws), driven over a StringTransport with
hand-made frames: the IRCv3 subprotocols, one IRC line per message without CRLF,
and the same IRC session as on TCP, sharing rooms with the other front ends."""

import pytest
import txaio
from conftest import HANDSHAKE, WSClient
from fakes import BINARY, CLOSE, PING, PONG, TEXT, close_code, parse_frames
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransportWithDisconnection

from chatd.irc.message import parse
from chatd.protocols.ircws import IrcWebSocketFactory, binary_frames, text_frames


def protocols_header(*names) -> bytes:
    return b"Sec-WebSocket-Protocol: " + ", ".join(names).encode() + b"\r\n" if names else b""


class IrcWS(WSClient):
    """An IRC-over-WebSocket client: lines in frames, lines out of frames."""

    def __init__(self, chat, factory, subprotocols=("text.ircv3.net",), **kw):
        super().__init__(chat, factory, headers=protocols_header(*subprotocols), **kw)
        self.opcode = BINARY if "binary.ircv3.net" in subprotocols[:1] else TEXT

    def say(self, *lines: str) -> None:
        for text in lines:
            self.send_frame(text.encode("utf-8"), self.opcode)

    def lines(self) -> list[str]:
        out = []
        for opcode, payload in self.frames():
            assert opcode == self.opcode, (opcode, payload)
            assert b"\r" not in payload and b"\n" not in payload, payload
            out.append(payload.decode("utf-8"))
        return out

    def register(self, nick: str) -> list[str]:
        self.say(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        return self.lines()


@pytest.fixture
def ircws(make_chat):
    """``ircws(**limits)`` -> (chat, connect); connect(subprotocols=...) opens a client."""
    old_loop = txaio.config.loop

    def build(**limits):
        chat = make_chat(**limits)
        txaio.config.loop = chat.clock
        factory = IrcWebSocketFactory(chat.service, chat.dispatcher, url="ws://localhost:8080/irc")
        return chat, factory, lambda **kw: IrcWS(chat, factory, **kw)

    yield build
    txaio.config.loop = old_loop


class HttpChannelStandIn:
    """Registered as the transport's producer, as twisted.web's HTTP channel is
    before an upgrade (a refused handshake unregisters it)."""

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


def handshake(factory, headers: bytes) -> bytes:
    proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.3", 50001))
    transport = StringTransportWithDisconnection(peerAddress=IPv4Address("TCP", "10.0.0.3",
                                                                         50001))
    transport.protocol = proto
    transport.registerProducer(HttpChannelStandIn(), True)
    proto.makeConnection(transport)
    proto.dataReceived(HANDSHAKE[:-2] + headers + b"\r\n")
    return transport.value()


def codes(lines) -> list[str]:
    return [line.split(" ")[1] for line in lines]


# -- the handshake ----------------------------------------------------------------------
@pytest.mark.parametrize("offered,chosen", [
    (("text.ircv3.net",), b"text.ircv3.net"),
    (("binary.ircv3.net",), b"binary.ircv3.net"),
    (("x-unknown", "binary.ircv3.net", "text.ircv3.net"), b"binary.ircv3.net"),
])
def test_the_client_s_first_supported_subprotocol_is_chosen(ircws, offered, chosen):
    chat, factory, _ = ircws()
    answer = handshake(factory, protocols_header(*offered))
    assert answer.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nSec-WebSocket-Protocol: " + chosen + b"\r\n" in answer


def test_no_subprotocol_is_text(ircws):
    chat, factory, connect = ircws()
    answer = handshake(factory, b"")
    assert answer.startswith(b"HTTP/1.1 101 ")
    assert b"sec-websocket-protocol" not in answer.lower()
    client = connect(subprotocols=())
    assert "001" in codes(client.register("alice"))


def test_only_unknown_subprotocols_are_refused(ircws):
    chat, factory, _ = ircws()
    answer = handshake(factory, protocols_header("chat.example"))
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"text.ircv3.net" in answer
    assert not chat.service.sessions


# -- framing ----------------------------------------------------------------------------
def test_framers_put_one_line_in_each_message():
    lines = ["PING x", "a" * 200, "b" * 70000]
    for framer, opcode in ((text_frames, TEXT), (binary_frames, BINARY)):
        assert parse_frames(framer(lines)) == [(opcode, t.encode()) for t in lines]


@pytest.mark.parametrize("subprotocol,opcode", [("text.ircv3.net", TEXT),
                                                ("binary.ircv3.net", BINARY)])
def test_registration_answers_line_by_line(ircws, subprotocol, opcode):
    chat, factory, connect = ircws()
    client = connect(subprotocols=(subprotocol,))
    lines = client.register("alice")  # lines() checks the opcode and the absence of CRLF
    assert codes(lines)[:5] == ["001", "002", "003", "004", "005"]
    assert lines[0].split(" ")[2] == "alice"
    assert client.session.nick == "alice"


def test_a_trailing_crlf_or_two_lines_in_one_message_are_understood(ircws):
    chat, factory, connect = ircws()
    client = connect()
    client.say("NICK alice\r\n")
    client.say("USER alice 0 * :Alice\r\nPING :tok\r\n")
    lines = client.lines()
    assert "001" in codes(lines)
    pong = parse(lines[-1])
    assert (pong.command, pong.params[-1]) == ("PONG", "tok")


# -- one chat with the other front ends -------------------------------------------------
def test_shares_a_room_with_a_line_user(ircws):
    chat, factory, connect = ircws()
    client = connect()
    client.register("web")
    client.say("JOIN #lobby")
    joined = client.lines()
    assert joined[0].startswith(":web!") and joined[0].endswith(" JOIN #lobby")
    tty = chat.line("tty", "#lobby")
    [join] = client.lines()
    assert join.startswith(":tty!") and join.endswith("JOIN #lobby")
    tty.send("hello from the terminal")
    tty.raw()
    [msg] = map(parse, client.lines())
    assert (msg.source.split("!")[0], msg.command, msg.params) == (
        "tty", "PRIVMSG", ("#lobby", "hello from the terminal"))
    client.say("PRIVMSG #lobby :hello from the browser")
    assert tty.lines() == ["[#lobby] <web> hello from the browser"]
    assert client.lines() == []  # no echo-message: the sender does not get it back


def test_private_messages_both_ways(ircws):
    chat, factory, connect = ircws()
    client = connect()
    client.register("web")
    tty = chat.line("tty")
    tty.send("/msg web psst")
    [msg] = map(parse, client.lines())
    assert (msg.source.split("!")[0], msg.command, msg.params) == ("tty", "PRIVMSG",
                                                                  ("web", "psst"))
    client.say("PRIVMSG tty :hi there")
    assert any("hi there" in line for line in tty.lines())


def test_invalid_utf8_closes(ircws):
    chat, factory, connect = ircws()
    client = connect()
    client.register("alice")
    client.send_frame(b"PRIVMSG #x :caf\xe9", TEXT)
    frames = client.frames()
    assert frames[-1][0] == CLOSE
    assert client.session is None or client.session not in chat.service.sessions
    assert "alice" not in chat.service.nicks


def test_heartbeat_is_a_websocket_ping_and_its_pong_keeps_the_session(ircws):
    chat, factory, connect = ircws(ping_interval=30, ping_timeout=60)
    chat.service.startService()
    client = connect()
    client.register("alice")
    for _ in range(4):
        chat.clock.advance(30)
        frames = client.frames()
        assert [op for op, _ in frames] == [PING]
        client.send_frame(frames[0][1], PONG)
    assert client.session in chat.service.sessions
    chat.clock.advance(90)  # silent now: dropped, with ERROR before the close frame
    frames = client.frames()
    ops = [op for op, _ in frames]
    assert CLOSE in ops
    assert any(op == TEXT and payload.startswith(b"ERROR ") for op, payload in frames)
    assert "alice" not in chat.service.nicks
    chat.service.stopService()


def test_a_refused_connection_gets_error_then_the_close(ircws):
    chat, factory, connect = ircws()
    chat.service.startService()
    chat.service.stopService()  # shutting down: new connections are refused
    _, _, rest = handshake(factory, protocols_header("text.ircv3.net")).partition(b"\r\n\r\n")
    frames = parse_frames(rest)
    assert frames[0] == (TEXT, b"ERROR :Closing link: the server is shutting down")
    assert frames[-1][0] == CLOSE
    assert not chat.service.sessions


def test_binary_subprotocol_takes_latin1_like_tcp(ircws):
    chat, factory, connect = ircws()
    client = connect(subprotocols=("binary.ircv3.net",))
    client.register("alice")
    client.say("JOIN #caf")
    client.lines()
    tty = chat.line("tty", "#caf")
    client.send_frame(b"PRIVMSG #caf :caf\xe9", BINARY)
    assert tty.lines() == ["[#caf] <alice> caf\u00e9"]
    assert client.session in chat.service.sessions


def test_invalid_utf8_is_explained_before_the_close(ircws):
    chat, factory, connect = ircws()
    client = connect()
    client.register("alice")
    client.send_frame(b"PRIVMSG #x :caf\xe9", TEXT)
    frames = client.frames()
    texts = [payload.decode() for op, payload in frames if op == TEXT]
    assert any(t.startswith(":chatd NOTICE alice :") and "invalid_utf8" in t for t in texts), texts
    assert texts[-1].startswith("ERROR :Closing link: invalid UTF-8")
    assert frames[-1][0] == CLOSE and close_code(frames[-1][1]) == 1000


def test_a_long_line_is_417_and_an_oversized_message_closes_with_1009(ircws):
    chat, factory, connect = ircws()
    client = connect()
    client.register("alice")
    client.say("PRIVMSG alice :" + "x" * 600)
    [too_long] = client.lines()
    assert parse(too_long).command == "417"
    assert client.session in chat.service.sessions
    client.send_frame(b"@" + b"t" * 9000 + b" PING x", TEXT)  # over IRC's 8191 of tags
    [too_long] = client.lines()
    assert parse(too_long).command == "417"
    client.send_frame(b"PING " + b"x" * chat.service.limits.max_frame, TEXT)
    [(op, payload)] = client.frames()
    assert (op, close_code(payload)) == (CLOSE, 1009)


def test_a_page_from_another_origin_is_refused_as_on_ws(ircws):
    chat, factory, _ = ircws()
    answer = handshake(factory, protocols_header("text.ircv3.net")
                       + b"Origin: https://evil.example\r\n")
    assert answer.startswith(b"HTTP/1.1 403 ")
    same_site = handshake(factory, protocols_header("text.ircv3.net")
                          + b"Origin: http://localhost:8080\r\n")
    assert same_site.startswith(b"HTTP/1.1 101 ")


def test_a_web_irc_client_that_does_not_read_is_dropped_others_keep_receiving(ircws):
    from chatd.outbuf import GRACE
    chat, factory, connect = ircws(send_queue=1000, burst=1000, rate=1000.0)
    client = connect()
    client.register("slow")
    client.say("JOIN #r")
    client.lines()
    fast = chat.line("fast", "#r")
    talker = chat.line("talker", "#r")
    fast.raw()
    client.proto.out.pauseProducing()
    talker.send(*[f"message {i}" for i in range(100)])
    chat.clock.advance(GRACE)  # over the cap and still not reading: dropped
    assert client.transport.disconnected
    lines = fast.lines()
    assert len([x for x in lines if x.startswith("[#r]")]) == 100
    assert "* slow quit (send queue exceeded)" in lines


def test_web_irc_room_members_are_written_through_their_queue(ircws):
    chat, factory, connect = ircws()
    web, other = connect(), connect()
    web.register("web")
    other.register("other")
    web.say("JOIN #lobby")
    other.say("JOIN #lobby")
    web.lines(), other.lines()
    room = chat.service.rooms.get("#lobby")
    # A room's broadcast writes the prepared frames straight to the queue.
    assert room.outlets[web.proto.session.fmt][web.proto.session] == web.proto.out.write
    web.say("PRIVMSG #lobby :hi")
    assert web.lines() == []
    assert other.lines() == [":web!web@chatd PRIVMSG #lobby :hi"]


def test_flood_is_the_services_and_lines_packed_in_one_message_count_each(ircws):
    chat, factory, connect = ircws(rate=0.1, burst=3, flood_strikes=3, reconnect_burst=0)
    client = connect()
    client.register("alice")  # NICK and USER: two of the three
    client.lines()
    # Five PRIVMSGs in one WebSocket message: five requests, not one.
    client.say("\r\n".join(f"PRIVMSG alice :spam {i}" for i in range(5)))
    client.say("PRIVMSG alice :more")
    frames = client.frames()
    texts = [payload.decode() for op, payload in frames if op == TEXT]
    assert ":chatd NOTICE alice :error flood: too many requests; slow down" in texts
    assert texts[-1] == "ERROR :Closing link: excess flood"
    assert (frames[-1][0], close_code(frames[-1][1])) == (CLOSE, 1000)
    assert client.session not in chat.service.sessions  # dropped, not just warned
