"""The chat service's rules, fan-out, limits, heartbeats and shutdown.

Members here are in-memory ``IClientSink``s speaking one of the real wire
formats, so what is asserted is what a client would receive.
"""

import json

import pytest
from fakes import FakeSink
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from chatd import wire
from chatd.errors import ChatError
from chatd.interfaces import IClientSink


def decode(fmt, payload: bytes) -> list[dict]:
    """Payload in one of the wire formats back to event dicts."""
    fmt = getattr(fmt, "fmt", fmt)  # see through a Spy
    if fmt is wire.WEBSOCKET:
        out = []
        while payload:
            assert payload[0] == 0x81, payload  # FIN + text, unmasked
            n, i = payload[1], 2
            if n == 126:
                n, i = int.from_bytes(payload[2:4], "big"), 4
            elif n == 127:
                n, i = int.from_bytes(payload[2:10], "big"), 10
            out.append(json.loads(payload[i:i + n]))
            payload = payload[i + n:]
        return out
    assert payload.endswith(b"\r\n")
    lines = payload.decode("utf-8").split("\r\n")[:-1]
    if fmt is wire.TEXT:
        return [{"text": line} for line in lines]
    return [json.loads(line) for line in lines]


def Sink(fmt=wire.JSONL):
    return FakeSink(fmt)


class Member:
    """A session on the service plus what its sink received."""

    def __init__(self, chat, nick=None, room=None, fmt=wire.JSONL, host="10.0.0.1"):
        self.chat = chat
        self.sink = Sink(fmt)
        self.session = chat.service.connect(self.sink, host)
        if nick:
            self.req("nick", nick=nick)
        if room:
            self.req("join", room=room)
        self.events()

    def req(self, kind, **fields) -> list[dict]:
        """Send one request; return what this member received because of it."""
        self.events()
        self.chat.dispatcher.handle(self.session, {"type": kind, **fields})
        return self.events()

    def events(self) -> list[dict]:
        out = []
        for p in self.sink.payloads:
            out.extend(decode(self.sink.wire_format, p))
        self.sink.payloads.clear()
        return out

    def of(self, kind) -> list[dict]:
        return [e for e in self.events() if e.get("type") == kind]


def error(events) -> str:
    [e] = events
    assert e["type"] == "error", e
    return e["code"]


def test_the_fake_sink_and_the_real_front_ends_provide_the_interface(chat):
    verifyObject(IClientSink, Sink())
    line = chat.line()
    verifyObject(IClientSink, line.proto)


def test_connect_greets_with_limits(chat):
    sink = Sink()
    chat.service.connect(sink, "10.0.0.1")
    [hello] = decode(wire.JSONL, sink.payloads[0])
    assert hello["type"] == "hello"
    assert hello["limits"]["max_message"] == chat.service.limits.max_message


# -- nicks ----------------------------------------------------------------------
@pytest.mark.parametrize("nick", ["1abc", "a b", "bob!", "-x", "x" * 25, "élan", ""])
def test_invalid_nick_refused(chat, nick):
    m = Member(chat)
    events = m.req("nick", nick=nick)
    assert error(events) in ("invalid_nick", "missing_argument")
    assert m.session.nick is None


def test_longest_nick_accepted(chat):
    m = Member(chat)
    assert m.req("nick", nick="a" * 24) == [{"type": "ack", "request": "nick", "nick": "a" * 24}]


def test_nick_taken_case_insensitively(chat):
    alice = Member(chat, "Alice")
    bob = Member(chat)
    assert error(bob.req("nick", nick="aLICE")) == "nick_taken"
    assert alice.events() == []
    assert chat.service.nicks.get("alice") is alice.session


def test_nick_changed_too_fast(chat):
    m = Member(chat, "alice", "#r")
    assert error(m.req("nick", nick="alicia")) == "nick_too_fast"
    chat.clock.advance(5)
    events = m.req("nick", nick="alicia")
    assert events[-1] == {"type": "ack", "request": "nick", "nick": "alicia"}
    # the old nick is free again
    assert error(Member(chat).req("nick", nick="alicia")) == "nick_taken"
    assert Member(chat).req("nick", nick="alice")[0]["type"] == "ack"


def test_nick_recase_is_a_change_not_a_clash(chat):
    alice = Member(chat, "alice", "#r")
    bob = Member(chat, "bob", "#r")
    chat.clock.advance(5)
    assert alice.req("nick", nick="Alice")[-1]["nick"] == "Alice"
    assert [(e["old"], e["new"]) for e in bob.of("nick")] == [("alice", "Alice")]


# -- rooms ------------------------------------------------------------------------
@pytest.mark.parametrize("room", ["room", "#", "#a b", "#" + "x" * 50, "#ü"])
def test_invalid_room_refused(chat, room):
    m = Member(chat, "alice")
    assert error(m.req("join", room=room)) == "invalid_room"
    assert len(chat.service.rooms) == 0


def test_join_tells_members_and_acks_with_nicks(chat):
    alice = Member(chat, "alice", "#Tea")
    bob = Member(chat, "bob")
    events = bob.req("join", room="#tea")
    assert [e["type"] for e in events] == ["join", "ack"]
    assert events[1]["nicks"] == ["alice", "bob"]
    assert events[1]["room"] == "#Tea"  # the room keeps its first spelling
    [join] = alice.events()
    assert (join["type"], join["room"], join["nick"]) == ("join", "#Tea", "bob")


def test_join_needs_a_nick(chat):
    assert error(Member(chat).req("join", room="#r")) == "no_nick"


def test_part_tells_members_and_stops_delivery(chat):
    alice = Member(chat, "alice", "#r")
    bob = Member(chat, "bob", "#r")
    alice.events()
    events = bob.req("part", room="#r", reason="lunch")
    assert events[-1] == {"type": "ack", "request": "part", "room": "#r"}
    [part] = alice.events()
    assert (part["type"], part["nick"], part["reason"]) == ("part", "bob", "lunch")
    alice.req("message", text="still there?")
    assert bob.events() == []
    assert error(bob.req("message", text="hi")) == "not_in_room"


def test_who_and_rooms(chat):
    alice = Member(chat, "alice", "#b")
    Member(chat, "bob", "#b")
    Member(chat, "carol", "#a")
    [ack] = alice.req("who")
    assert ack["nicks"] == ["alice", "bob"]
    [ack] = alice.req("who", room="#A")
    assert (ack["room"], ack["nicks"]) == ("#a", ["carol"])
    assert error(alice.req("who", room="#nowhere")) == "no_such_room"
    [ack] = alice.req("rooms")
    assert ack["rooms"] == [{"room": "#a", "members": 1}, {"room": "#b", "members": 2}]


def test_empty_rooms_disappear(chat):
    alice = Member(chat, "alice", "#r")
    bob = Member(chat, "bob", "#r")
    alice.req("part")
    assert [r["room"] for r in bob.req("rooms")[0]["rooms"]] == ["#r"]
    chat.service.disconnected(bob.session)
    assert len(chat.service.rooms) == 0
    assert alice.req("rooms")[0]["rooms"] == []  # nobody kept it: gone, state and all


def test_part_when_in_no_room(chat):
    assert error(Member(chat, "alice").req("part")) == "not_in_room"


def test_room_limit_per_session(make_chat):
    chat = make_chat(max_rooms_per_session=2)
    m = Member(chat, "alice", "#a")
    m.req("join", room="#b")
    assert error(m.req("join", room="#c")) == "too_many_rooms"


# -- messages ---------------------------------------------------------------------
@pytest.mark.parametrize("text,code", [
    ("", "empty_message"),
    ("   ", "empty_message"),
    (None, "empty_message"),
    ("x" * 2001, "message_too_long"),
    ("ring\x07", "invalid_text"),
    ("\x1b[31mred", "invalid_text"),
    ("two\nlines", "invalid_text"),
    ("del\x7f", "invalid_text"),
])
def test_bad_message_refused_to_sender_only(chat, text, code):
    alice = Member(chat, "alice", "#r")
    bob = Member(chat, "bob", "#r")
    alice.events()
    assert error(alice.req("message", text=text)) == code
    assert bob.events() == []


def test_longest_message_and_tab_accepted(chat):
    alice = Member(chat, "alice", "#r")
    bob = Member(chat, "bob", "#r")
    for text in ("x" * 2000, "a\tb"):
        alice.req("message", text=text)
        assert bob.of("message")[0]["text"] == text


def test_speaking_before_nick_or_outside_room(chat):
    m = Member(chat)
    assert error(m.req("message", text="hi")) == "no_nick"
    m.req("nick", nick="alice")
    assert error(m.req("message", text="hi")) == "not_in_room"
    m.req("join", room="#a")
    assert error(m.req("message", room="#b", text="hi")) == "not_in_room"


def test_message_reaches_room_with_id_and_clock_time(chat):
    alice = Member(chat, "alice", "#r")
    bob = Member(chat, "bob", "#r")
    acks = []
    for i in range(5):
        chat.clock.advance(1.5)
        acks.extend(e for e in alice.req("message", text=f"m{i}") if e["type"] == "ack")
    got = bob.events()
    assert [e["text"] for e in got] == [f"m{i}" for i in range(5)]
    mids = [e["mid"] for e in got]
    assert mids == sorted(set(mids))
    assert [a["mid"] for a in acks] == mids
    start = got[0]["ts"]
    assert [e["ts"] - start for e in got] == [0, 1.5, 3.0, 4.5, 6.0]
    assert start == chat.clock.seconds() - 6.0


def test_action(chat):
    alice = Member(chat, "alice", "#r")
    bob = Member(chat, "bob", "#r")
    alice.req("action", text="waves")
    [e] = bob.events()
    assert (e["type"], e["from"], e["text"]) == ("action", "alice", "waves")


def test_private_message(chat):
    alice = Member(chat, "alice")
    bob = Member(chat, "Bob")
    carol = Member(chat, "carol")
    events = alice.req("private", to="bob", text="psst")
    assert [e["type"] for e in events] == ["private", "ack"]
    [got] = bob.events()
    assert (got["from"], got["to"], got["text"]) == ("alice", "Bob", "psst")
    assert carol.events() == []


def test_private_to_nick_not_online(chat):
    alice = Member(chat, "alice")
    [e] = alice.req("private", to="ghost", text="hello?")
    assert (e["code"], e["message"]) == ("no_such_nick", "ghost is not online")


def test_private_to_self_arrives_once(chat):
    alice = Member(chat, "alice")
    events = alice.req("private", to="ALICE", text="note to self")
    assert [e["type"] for e in events] == ["private", "ack"]


# -- presence across wire formats ---------------------------------------------------
def formats_room(chat):
    """alice (JSON lines) with bob (text) and carol (WebSocket) in #a and #b."""
    alice = Member(chat, "alice", "#a")
    alice.req("join", room="#b")
    bob = Member(chat, "bob", "#a", fmt=wire.TEXT)
    bob.req("join", room="#b")
    carol = Member(chat, "carol", "#a", fmt=wire.WEBSOCKET)
    carol.req("join", room="#b")
    for m in (alice, bob, carol):
        m.events()
    return alice, bob, carol


def test_nick_change_reaches_each_member_once(chat):
    alice, bob, carol = formats_room(chat)
    chat.clock.advance(10)
    alice.req("nick", nick="alicia")
    assert bob.events() == [{"text": "* alice is now known as alicia"}]
    [e] = carol.events()
    assert (e["type"], e["old"], e["new"]) == ("nick", "alice", "alicia")
    # still in both rooms under the new nick
    assert sorted(carol.req("who", room="#b")[0]["nicks"]) == ["alicia", "bob", "carol"]


def test_quit_reaches_each_member_once(chat):
    alice, bob, carol = formats_room(chat)
    alice.req("quit", reason="bye all")
    assert alice.sink.closed == "bye all"
    assert bob.events() == [{"text": "* alice quit (bye all)"}]
    [e] = carol.events()
    assert (e["type"], e["nick"], e["reason"]) == ("quit", "alice", "bye all")
    assert "alice" not in chat.service.nicks


def test_disconnect_is_a_quit_with_reason(chat):
    alice, bob, carol = formats_room(chat)
    chat.service.disconnected(alice.session, "connection reset")
    assert bob.events() == [{"text": "* alice quit (connection reset)"}]
    assert len(chat.service.sessions) + len(chat.service._closing) == 2


def test_join_and_part_reach_every_format(chat):
    alice, bob, carol = formats_room(chat)
    dave = Member(chat, "dave", "#a")
    assert bob.events() == [{"text": "* dave joined #a"}]
    assert [e["nick"] for e in carol.of("join")] == ["dave"]
    dave.req("part")
    assert bob.events() == [{"text": "* dave left #a"}]
    assert [(e["type"], e["nick"]) for e in alice.events()] == [("join", "dave"),
                                                                 ("part", "dave")]


# -- fan-out economy ------------------------------------------------------------------
class Spy:
    """Wraps a wire format and counts what it encodes."""

    def __init__(self, fmt):
        self.fmt = fmt
        self.encoded = []

    def __call__(self, event):
        self.encoded.append(event)
        return self.fmt(event)

    def count(self, kind):
        return sum(1 for e in self.encoded if e.type == kind)


def test_broadcast_encodes_once_per_format(chat):
    spies = [Spy(wire.TEXT), Spy(wire.JSONL), Spy(wire.WEBSOCKET)]
    members = [Member(chat, f"u{i}", "#r", fmt=spies[i % 3]) for i in range(9)]
    sender = members[0]
    for m in members:
        m.sink.payloads.clear()
    for spy in spies:
        spy.encoded.clear()
    sender.req("message", text="hello everyone")
    for spy in spies:
        assert spy.count("message") == 1
        payloads = [m.sink.payloads[0] for m in members[1:] if m.sink.wire_format is spy]
        assert len(payloads) >= 2
        assert all(p is payloads[0] for p in payloads)
        assert decode(spy, payloads[0])[0]["text"] in ("hello everyone",
                                                       "[#r] <u0> hello everyone")
    sender.req("quit")  # a quit fans out through another path
    for spy in spies:
        assert spy.count("quit") == 1


# -- connection limits ------------------------------------------------------------------
# -- flood control ------------------------------------------------------------------
def test_token_bucket_refuses_past_burst(make_chat):
    chat = make_chat(rate=2.0, burst=3, reconnect_burst=0)
    alice = Member(chat, "alice", "#r")  # two requests
    bob = Member(chat, "bob", "#r")
    bob.events()
    alice.req("message", text="one")  # the third
    assert error(alice.req("message", text="two")) == "flood"
    assert [e["text"] for e in bob.events()] == ["one"]
    chat.clock.advance(0.5)  # one token back
    assert alice.req("message", text="three")[-1]["type"] == "ack"
    assert error(alice.req("message", text="four")) == "flood"


def test_persistent_flood_disconnects(make_chat):
    chat = make_chat(rate=1.0, burst=2, flood_strikes=4, reconnect_burst=0)
    alice = Member(chat, "alice", "#r")
    bob = Member(chat, "bob", "#r")
    bob.events()
    codes = [error(alice.req("message", text="spam")) for _ in range(3)]
    assert codes == ["flood"] * 3
    assert alice.sink.closed is None
    alice.req("message", text="spam")
    assert alice.sink.closed == "excess flood"
    assert [(e["type"], e["reason"]) for e in bob.events()] == [("quit", "excess flood")]


# -- heartbeats ------------------------------------------------------------------------
@pytest.fixture
def beating(make_chat):
    chat = make_chat(ping_interval=30, ping_timeout=60, register_timeout=40)
    chat.service.startService()
    yield chat
    if chat.service.running:
        chat.service.stopService()


def test_quiet_session_is_pinged_after_interval(beating):
    m = Member(beating, "alice")
    beating.clock.advance(29)
    assert m.sink.pings == 0
    beating.clock.advance(15)
    assert m.sink.pings == 1
    assert m.sink.closed is None


def test_silent_session_dropped_with_ping_timeout(beating):
    alice = Member(beating, "alice", "#r")
    bob = Member(beating, "bob", "#r")
    quits = []
    for _ in range(5):
        beating.clock.advance(15)
        quits.extend(e for e in bob.events() if e["type"] == "quit")
        bob.req("ping")
    assert alice.sink.closed == "ping timeout"
    assert bob.sink.closed is None
    assert [(e["nick"], e["reason"]) for e in quits] == [("alice", "ping timeout")]


def test_answering_session_survives(beating):
    m = Member(beating, "alice")
    for _ in range(20):  # five minutes
        beating.clock.advance(15)
        if m.sink.pings:
            m.sink.pings = 0
            m.req("pong")
    assert m.sink.closed is None
    assert m.session in beating.service.sessions


def test_registration_timeout(beating):
    idle = Member(beating)
    named = Member(beating, "alice")
    for _ in range(3):  # busy, but never picks a nick
        beating.clock.advance(15)
        idle.req("rooms")
        named.req("rooms")
    assert idle.sink.closed == "registration timeout"
    assert named.sink.closed is None


def test_failing_session_does_not_stop_heartbeat(beating):
    broken = Member(beating, "broken")

    def explode():
        raise RuntimeError("boom")

    broken.sink.send_ping = explode
    fine = Member(beating, "fine")
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        beating.clock.advance(30)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert fine.sink.pings == 1
    [failure] = [e for e in logged if "log_failure" in e]
    assert failure["log_failure"].check(RuntimeError)
    assert beating.service._heartbeat.running
    fine.req("pong")
    beating.clock.advance(30)
    assert fine.sink.pings == 2
    assert broken.sink.closed == "ping timeout"  # it never answered


# -- shutdown -----------------------------------------------------------------------------
def test_stop_service_tells_clients_and_fires_when_gone(chat):
    chat.service.startService()
    clients = [chat.line("alice", "#r"), chat.line("bob", "#r"), chat.line()]
    done = []
    chat.service.stopService().addBoth(done.append)
    assert done == [None]  # StringTransportWithDisconnection closes at once
    for c in clients:
        assert c.lines()[-1] == "* closing connection: server shutting down"
        assert not c.transport.connected
    assert len(chat.service.sessions) + len(chat.service._closing) == 0


def test_stop_service_waits_then_aborts_stragglers(chat):
    chat.service.startService()
    sinks = []
    for nick in ("alice", "bob"):
        m = Member(chat, nick)
        m.transport = StringTransport()
        m.sink.close_session = lambda reason, m=m: setattr(m.sink, "closed", reason)
        m.sink.abort = m.transport.abortConnection
        sinks.append(m)
    done = []
    chat.service.stopService().addBoth(done.append)
    assert [m.sink.closed for m in sinks] == ["server shutting down"] * 2
    assert done == []
    chat.service.disconnected(sinks[0].session)  # one goes politely
    chat.clock.advance(2.9)
    assert done == []
    chat.clock.advance(0.2)
    assert done == [None]
    assert not sinks[0].transport.disconnected
    assert sinks[1].transport.disconnected
    assert len(chat.service.sessions) + len(chat.service._closing) == 0
    assert chat.clock.getDelayedCalls() == []


def test_no_new_connections_while_stopping(chat):
    chat.service.startService()
    m = Member(chat)
    m.sink.close_session = lambda reason: None
    chat.service.stopService()
    with pytest.raises(ChatError) as e:
        chat.service.connect(Sink(), "10.0.0.1")
    assert e.value.code == "shutting_down"
