"""The sink base every front end shares: the interface, closing, overflow,
the single writer on WebSocket, and what a departed client leaves behind."""

import pytest
from fakes import CLOSE, TEXT, close_code
from zope.interface.verify import verifyObject

from chatd.events import Message
from chatd.interfaces import IClientSink
from chatd.outbuf import GRACE
from chatd.sink import CLOSE_TIMEOUT


def test_the_real_front_ends_provide_the_whole_interface(chat, ws):
    verifyObject(IClientSink, chat.line().proto)
    _, connect = ws()
    verifyObject(IClientSink, connect().proto)


def spy_disconnects(chat):
    calls = []
    real = chat.service.disconnected

    def disconnected(session, reason="connection closed"):
        calls.append((session.nick, reason))
        return real(session, reason)
    chat.service.disconnected = disconnected
    return calls


def test_overflow_aborts_and_the_reason_reaches_the_service_once(make_chat):
    chat = make_chat(send_queue=500, burst=1000, rate=1000.0)
    slow = chat.line("slow", "#r")
    talker = chat.line("talker", "#r")
    calls = spy_disconnects(chat)
    slow.proto.out.pauseProducing()
    talker.send(*[f"message {i:03d} " + "x" * 50 for i in range(40)])
    chat.clock.advance(GRACE)
    assert slow.transport.disconnected
    assert calls == [("slow", "send queue exceeded")]
    assert "* slow quit (send queue exceeded)" in talker.lines()


def test_a_departed_client_leaves_no_buffers_behind(make_chat):
    chat = make_chat(send_queue=10_000, burst=1000, rate=1000.0)
    slow = chat.line("slow", "#r")
    talker = chat.line("talker", "#r")
    out = slow.proto.out
    out.pauseProducing()
    talker.send(*[f"message {i}" for i in range(50)])
    assert out.pending_bytes > 0
    slow.transport.loseConnection()  # the client goes away with output queued
    assert (out.pending, out.pending_bytes, out.transport) == ([], 0, None)
    assert slow.proto.session is None


def test_a_peer_that_never_lets_go_is_cut_off_after_the_close_timeout(chat):
    client = chat.line("alice")
    aborted = []
    client.transport.loseConnection = lambda: None  # a close that never completes
    client.transport.abortConnection = lambda: aborted.append(True)
    client.send("/quit bye")
    assert client.lines() == ["* closing connection: bye"]
    chat.clock.advance(CLOSE_TIMEOUT - 0.1)
    assert aborted == []
    chat.clock.advance(0.1)
    assert aborted == [True]


def test_a_broadcast_can_leave_the_sender_out(chat):
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    alice.raw()
    event = Message("#r", "alice", "hi", 1, 0.0)
    chat.service.bus.publish_room("#r", event, exclude=alice.session)
    assert alice.lines() == []
    assert bob.lines() == ["[#r] <alice> hi"]


# -- WebSocket: the output queue is the only writer --------------------------------
@pytest.mark.parametrize("how", ["server drop", "protocol error"])
def test_a_close_frame_never_overtakes_queued_data(ws, how):
    chat, connect = ws(burst=1000, rate=1000.0)
    reader = connect()
    reader.send({"type": "nick", "nick": "reader"})
    reader.send({"type": "join", "room": "#r"})
    talker = chat.line("talker", "#r")
    reader.frames()
    reader.proto.out.pauseProducing()  # the reader's transport is full
    talker.send("one", "two", "three")
    assert reader.frames() == []  # queued
    if how == "server drop":
        chat.service.drop(reader.session, "go away")
    else:
        reader.send_frame(b"x", opcode=0x3)  # a reserved opcode: Autobahn fails the connection
    reader.proto.out.resumeProducing()
    got = reader.frames()
    texts = [p for op, p in got if op == TEXT]
    assert [b'"text":"one"' in texts[0], b'"text":"two"' in texts[1],
            b'"text":"three"' in texts[2]] == [True, True, True]
    assert got[-1][0] == CLOSE  # last, after everything that was queued
    if how == "server drop":
        assert b'"type":"bye"' in texts[-1]
        assert close_code(got[-1][1]) == 1000
    else:
        assert close_code(got[-1][1]) == 1002


def test_autobahns_own_answers_count_as_replies(ws, monkeypatch):
    # A pong (or close frame) answers what the peer sent: held to the cap like any
    # reply, even before the end of the turn, so a ping flood cannot escape it.
    from fakes import PING, PONG

    from chatd.outbuf import OutputQueue
    chat, connect = ws()
    client = connect()
    client.frames()
    counted = []
    real = OutputQueue.write_counted

    def spy(queue, data):
        counted.append(data)
        real(queue, data)
    monkeypatch.setattr(OutputQueue, "write_counted", spy)
    client.send_frame(b"are you there", opcode=PING)
    [(opcode, payload)] = client.frames()
    assert (opcode, payload) == (PONG, b"are you there")
    assert len(counted) == 1


@pytest.mark.parametrize("front_end", ["line", "irc"])
def test_every_front_end_asks_for_tcp_nodelay(chat, front_end):
    # One place (SinkBase.start_output) for every front end: a chat line must not
    # wait for Nagle's algorithm to gather more.
    from twisted.internet.testing import StringTransport

    from chatd.protocols.irc import IrcFactory
    from chatd.protocols.line import LineFactory

    asked = []

    class TCP(StringTransport):
        def setTcpNoDelay(self, enabled):
            asked.append(enabled)

    factory = (LineFactory if front_end == "line" else IrcFactory)(chat.service, chat.dispatcher)
    proto = factory.buildProtocol(None)
    proto.makeConnection(TCP())
    assert asked == [True]
