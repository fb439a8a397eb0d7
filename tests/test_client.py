"""chatd.client against an in-memory server on a fake clock.

``ScriptedServer`` plays the daemon's side of the line port by hand (so a test
says exactly what the server sends and sees exactly what the client sent);
the WebSocket tests connect the client to the real chat service through an
in-memory pipe.  No sockets, no real time.
"""

import json

import pytest
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure
from twisted.test import iosim

from chatd.client import (
    ChatClient,
    ClientStopped,
    LoginError,
    RequestError,
    Target,
    TLSError,
    tls_error,
)
from chatd.dispatch import Dispatcher
from chatd.limits import Limits
from chatd.protocols.websocket import ChatWebSocketFactory
from chatd.service import ChatService


def result(d):
    """The result of a Deferred that has fired (a Failure if it failed)."""
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


class ScriptedServer:
    """An endpoint whose connections the test answers by hand; ``up`` = accepting."""

    def __init__(self):
        self.up = True
        self.attempts = 0
        self.conns = []

    def connect(self, factory):
        self.attempts += 1
        if not self.up:
            return fail(error.ConnectionRefusedError("server down"))
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9000))
        transport = StringTransportWithDisconnection()
        transport.protocol = proto
        proto.makeConnection(transport)
        self.conns.append((proto, transport))
        return succeed(proto)

    @property
    def proto(self):
        return self.conns[-1][0]

    @property
    def transport(self):
        return self.conns[-1][1]

    def sent(self) -> list:
        """What the client wrote on the current connection since the last call."""
        data = self.transport.value().decode()
        self.transport.clear()
        return [json.loads(line) if line.startswith("{") else line
                for line in data.splitlines()]

    def send(self, *events):
        for e in events:
            self.proto.dataReceived(json.dumps(e).encode() + b"\r\n")

    def greet(self):
        """Answer /json and the nick request the way the daemon does."""
        self.proto.dataReceived(b"* Welcome to chatd\r\n")
        assert self.sent() == ["/json"]
        self.send({"type": "ack", "request": "json", "mode": "json"})
        nick = self.sent()[0]
        assert nick["type"] == "nick"
        self.send({"type": "ack", "request": "nick", "id": nick["id"], "nick": nick["nick"]})

    def answer(self, req, **data):
        self.send({"type": "ack", "request": req["type"], "id": req["id"], **data})

    def drop(self):
        self.transport.loseConnection()


def msg(mid, text, room="#r", history=False):
    e = {"type": "message", "room": room, "from": "bob", "text": text, "mid": mid, "ts": 1.0}
    if history:
        e["history"] = True
    return e


@pytest.fixture
def server():
    return ScriptedServer()


@pytest.fixture
def clock():
    return Clock()


def make_client(server, clock, url="tcp://chat.example:9000"):
    client = ChatClient(url, "bot", reactor=clock, endpoint=server)
    seen = []
    client.on_event(seen.append, "message", "action")
    return client, seen


def joined(server, client, room="#r"):
    d = client.join(room)
    req = server.sent()[0]
    assert req == {"type": "join", "id": req["id"], "room": room}
    server.answer(req, room=room, nicks=["bot"])
    return result(d)


def test_connects_in_json_mode_picks_nick_and_answers_requests(server, clock):
    client, seen = make_client(server, clock)
    ready = client.ready()
    client.start()
    server.greet()
    assert result(ready) is client
    assert joined(server, client)["nicks"] == ["bot"]
    d = client.say("#r", "hello")
    req = server.sent()[0]
    assert req == {"type": "message", "id": req["id"], "room": "#r", "text": "hello"}
    server.send(msg(7, "hello"))
    server.answer(req, room="#r", mid=7, ts=1.0)
    assert result(d)["mid"] == 7
    assert [e["text"] for e in seen] == ["hello"]


def test_refused_request_fails_with_the_servers_error(server, clock):
    client, _ = make_client(server, clock)
    client.start()
    server.greet()
    d = client.join("bad room")
    req = server.sent()[0]
    server.send({"type": "error", "id": req["id"], "request": "join",
                 "code": "invalid_room", "message": "a room is '#' and ..."})
    failure = result(d)
    assert failure.check(RequestError)
    assert failure.value.code == "invalid_room"
    assert client.rooms == {}


def test_answers_server_pings(server, clock):
    client, _ = make_client(server, clock)
    client.start()
    server.greet()
    server.send({"type": "ping", "ts": 1.0})
    assert server.sent() == [{"type": "pong"}]


def test_request_in_flight_fails_when_connection_drops(server, clock):
    client, _ = make_client(server, clock)
    client.start()
    server.greet()
    d = client.say("#r", "lost?")
    server.drop()
    assert result(d).check(error.ConnectionLost)
    assert not client.connected


def test_reconnects_with_backoff_rejoins_and_asks_for_what_it_missed(server, clock):
    client, seen = make_client(server, clock)
    client.start()
    server.greet()
    joined(server, client)
    server.send(msg(3, "one"), msg(5, "two"))
    states = []
    client.on_event(states.append, "connected", "disconnected")

    server.up = False
    server.drop()
    assert states[-1]["type"] == "disconnected"
    # Refused attempts back off: 1 s, then about 2 s, then about 4 s ...
    for _ in range(3):
        clock.advance(10)
    attempts = server.attempts
    assert attempts >= 4
    clock.advance(1)
    assert server.attempts == attempts  # not hammering: waiting between tries
    server.up = True
    clock.advance(60)
    assert server.attempts == attempts + 1
    server.greet()
    rejoin = server.sent()[0]
    assert rejoin == {"type": "join", "id": rejoin["id"], "room": "#r", "since": 5}
    assert not client.connected  # not ready until the room is back
    # The server replays from 5 on (5 again, as a careless server might), then
    # the message stored while we rejoined arrives live as well.
    server.send(msg(5, "two", history=True), msg(6, "missed", history=True))
    server.answer(rejoin, room="#r", nicks=["bot", "bob"])
    server.send(msg(6, "missed"), msg(7, "live"))
    assert client.connected and states[-1]["type"] == "connected"
    assert [e["text"] for e in seen] == ["one", "two", "missed", "live"]


def test_after_a_restart_without_history_live_ids_may_start_again(server, clock):
    client, seen = make_client(server, clock)
    client.start()
    server.greet()
    joined(server, client)
    server.send(msg(40, "before"))
    server.drop()
    clock.advance(5)
    server.greet()
    rejoin = server.sent()[0]
    server.answer(rejoin, room="#r", nicks=["bot"])
    server.send(msg(1, "after restart"))
    assert [e["text"] for e in seen] == ["before", "after restart"]


def test_nick_taken_on_first_connect_is_reported(server, clock):
    client, _ = make_client(server, clock)
    ready = client.ready(fail_after=1)
    client.start()
    server.proto.dataReceived(b'{"type":"ack","request":"json","mode":"json"}\r\n')
    nick = [r for r in server.sent() if isinstance(r, dict)][0]
    server.send({"type": "error", "id": nick["id"], "request": "nick", "code": "nick_taken",
                 "message": "bot is already taken"})
    failure = result(ready)
    assert failure.check(RequestError) and failure.value.code == "nick_taken"
    clock.advance(0)
    assert not server.transport.connected  # that connection is given up


def test_wait_for_fires_with_the_next_matching_event_only(server, clock):
    client, _ = make_client(server, clock)
    client.start()
    server.greet()
    joined(server, client)
    by_fields = client.wait_for({"type": "message", "text": "second"})
    by_test = client.wait_for(lambda e: e.get("type") == "join")
    server.send(msg(1, "first"))
    assert not by_fields.called and not by_test.called
    server.send(msg(2, "second"), {"type": "join", "room": "#r", "nick": "eve", "ts": 1.0})
    assert result(by_fields)["mid"] == 2
    assert result(by_test)["nick"] == "eve"


def test_stop_quits_and_stops_reconnecting(server, clock):
    client, _ = make_client(server, clock)
    client.start()
    server.greet()
    d = client.stop("bye now")
    assert server.sent() == [{"type": "quit", "reason": "bye now"}]
    assert result(d) is None
    clock.advance(120)
    assert server.attempts == 1


def test_tls_failures_are_named_plainly():
    mismatch = tls_error(Failure(VerificationError(errors=["DNS mismatch"])), "chat.example")
    assert isinstance(mismatch, TLSError) and "not valid for 'chat.example'" in str(mismatch)
    untrusted = tls_error(Failure(SSL.Error([("SSL routines", "", "certificate verify failed")])),
                          "chat.example")
    assert "not trusted" in str(untrusted) and "ca-file" in str(untrusted)
    assert tls_error(Failure(error.ConnectionRefusedError()), "chat.example") is None


def test_tls_error_stops_the_client_and_fails_waiters(clock):
    class Untrusted:
        attempts = 0

        def connect(self, factory):
            self.attempts += 1
            return fail(SSL.Error([("SSL routines", "", "certificate verify failed")]))

    endpoint = Untrusted()
    client = ChatClient("tls://chat.example:9443", "bot", reactor=clock, endpoint=endpoint)
    ready = client.ready()  # would wait forever for an ordinary failure
    client.start()
    failure = result(ready)
    assert failure.check(TLSError) and "not trusted" in str(failure.value)
    clock.advance(300)
    assert endpoint.attempts == 1
    assert result(client.say("#r", "x")).check(TLSError)


@pytest.mark.parametrize("url, scheme, host, port, secure", [
    ("ws://127.0.0.1:8080/ws", "ws", "127.0.0.1", 8080, False),
    ("wss://chat.example/ws", "wss", "chat.example", 443, True),
    ("tcp://chat.example", "tcp", "chat.example", 9000, False),
    ("tls://chat.example:7000", "tls", "chat.example", 7000, True),
])
def test_urls(url, scheme, host, port, secure):
    t = Target(url)
    assert (t.scheme, t.host, t.port, t.secure) == (scheme, host, port, secure)


def test_bad_url_is_refused():
    with pytest.raises(ValueError, match="scheme"):
        Target("http://chat.example/")


# -- WebSocket, against the real chat service in memory -------------------------------
class MemoryWebSocketServer:
    """An endpoint that pipes each connection into chatd's WebSocket factory."""

    def __init__(self, chat):
        self.factory = ChatWebSocketFactory(chat, Dispatcher(chat))
        self.pumps = []

    def connect(self, factory):
        client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8080))
        server = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        pump = iosim.connect(server, iosim.makeFakeServer(server),
                             client, iosim.makeFakeClient(client), greet=False)
        self.pumps.append(pump)
        return succeed(client)

    def flush(self):
        for _ in range(5):
            for p in self.pumps:
                p.flush()


def test_two_websocket_clients_chat_through_the_service(clock):
    chat = ChatService(Limits(), clock=clock)
    net = MemoryWebSocketServer(chat)
    alice = ChatClient("ws://127.0.0.1:8080/ws", "alice", reactor=clock, endpoint=net)
    bob = ChatClient("ws://127.0.0.1:8080/ws", "bob", reactor=clock, endpoint=net)
    heard = []
    bob.on_event(heard.append, "message")
    alice.start()
    bob.start()
    joins = [alice.join("#r"), bob.join("#r")]
    net.flush()
    assert [result(j)["room"] for j in joins] == ["#r", "#r"]
    sent = alice.say("#r", "hi bob")
    net.flush()
    assert result(sent)["mid"] == heard[0]["mid"]
    assert [(e["from"], e["text"]) for e in heard] == [("alice", "hi bob")]
    refused = bob.private("nobody", "psst")
    net.flush()
    assert result(refused).value.code == "no_such_nick"


def test_a_protobuf_client_and_a_json_client_chat_through_the_service(clock):
    chat = ChatService(Limits(), clock=clock)
    net = MemoryWebSocketServer(chat)
    alice = ChatClient("ws://127.0.0.1:8080/ws", "alice", reactor=clock, endpoint=net,
                       format="protobuf")
    bob = ChatClient("ws://127.0.0.1:8080/ws", "bob", reactor=clock, endpoint=net)
    heard_a, heard_b = [], []
    alice.on_event(heard_a.append, "message")
    bob.on_event(heard_b.append, "message")
    alice.start()
    bob.start()
    joins = [alice.join("#r"), bob.join("#r")]
    net.flush()
    assert [result(j)["room"] for j in joins] == ["#r", "#r"]
    [a_session] = [s for s in chat.sessions if s.nick == "alice"]
    assert a_session.sink.binary  # really on chatd.protobuf.v1
    sent = alice.say("#r", "hi bob")
    net.flush()
    assert result(sent)["mid"] == heard_b[0]["mid"] == heard_a[0]["mid"]
    assert heard_a == heard_b
    answered = bob.say("#r", "hi alice")
    net.flush()
    assert result(answered)["request"] == "message"
    assert [e["text"] for e in heard_a] == ["hi bob", "hi alice"]
    refused = alice.private("nobody", "psst")
    net.flush()
    assert result(refused).value.code == "no_such_nick"


def test_a_server_that_does_not_choose_protobuf_is_a_failed_connection(clock, monkeypatch):
    # An older chatd: it ignores the subprotocol offer and would speak JSON.
    from chatd.protocols import websocket
    monkeypatch.setattr(websocket, "choose_subprotocol", lambda offered: None)
    chat = ChatService(Limits(), clock=clock)
    net = MemoryWebSocketServer(chat)
    client = ChatClient("ws://127.0.0.1:8080/ws", "alice", reactor=clock, endpoint=net,
                        format="protobuf")
    ready = client.ready(fail_after=1)
    client.start()
    net.flush()
    assert "chatd.protobuf.v1" in str(result(ready).value)
    assert not client.connected and "alice" not in chat.nicks
    client.stop()


def test_protobuf_needs_a_websocket_url_and_a_known_format():
    with pytest.raises(ValueError, match="ws://"):
        ChatClient("tcp://127.0.0.1:9000", "x", reactor=Clock(), format="protobuf")
    with pytest.raises(ValueError, match="format"):
        ChatClient("ws://127.0.0.1:8080/ws", "x", reactor=Clock(), format="xml")


def test_a_long_absence_comes_back_page_by_page(server, clock):
    client, seen = make_client(server, clock)
    client.start()
    server.greet()
    joined(server, client)
    server.send(msg(1, "first"))
    server.drop()
    clock.advance(5)
    server.greet()
    page1 = server.sent()[0]
    assert page1["since"] == 1
    server.send(msg(2, "a", history=True), msg(3, "b", history=True))
    server.answer(page1, room="#r", nicks=["bot"], more=True)
    page2 = server.sent()[0]
    assert page2 == {"type": "join", "id": page2["id"], "room": "#r", "since": 3}
    assert not client.connected
    server.send(msg(4, "c", history=True))
    server.answer(page2, room="#r", nicks=["bot"])
    assert client.connected
    assert [e["text"] for e in seen] == ["first", "a", "b", "c"]


def test_a_server_that_keeps_refusing_the_nick_is_retried_ever_more_slowly(server, clock):
    client, _ = make_client(server, clock)
    client.start()

    def refuse_nick():
        server.send({"type": "ack", "request": "json", "mode": "json"})
        nick = [r for r in server.sent() if isinstance(r, dict)][0]
        server.send({"type": "error", "id": nick["id"], "request": "nick",
                     "code": "nick_taken", "message": "bot is already taken"})

    gaps, last = [], clock.seconds()
    for _ in range(5):
        refuse_nick()
        attempts = server.attempts
        while server.attempts == attempts:
            clock.advance(0.25)
        gaps.append(clock.seconds() - last)
        last = clock.seconds()
    # 2, 4, 8, 16, 30 s (plus up to 1 s of jitter): doubling, not hammering.
    assert all(later > earlier for earlier, later in zip(gaps[:4], gaps[1:4]))
    assert gaps[3] >= 16
    assert result(client.stop()) is None
    assert result(client.ready()).check(ClientStopped)


# -- logging in as a registered nick ---------------------------------------------------
PASSWORD = "correct horse"


def login_request(server) -> dict:
    """Switch the current connection to JSON and return the client's first request."""
    server.proto.dataReceived(b"* Welcome to chatd\r\n")
    assert server.sent() == ["/json"]
    server.send({"type": "ack", "request": "json", "mode": "json"})
    return server.sent()[0]


def refuse(server, req, code, message="no"):
    server.send({"type": "error", "id": req["id"], "request": req["type"], "code": code,
                 "message": message})


def make_login_client(server, clock):
    client = ChatClient("tcp://chat.example:9000", "Olga", reactor=clock, endpoint=server,
                        password=PASSWORD)
    events = []
    client.on_event(events.append, "private", "connected")
    return client, events


def test_with_a_password_it_logs_in_on_every_connect_and_gets_waiting_messages(server, clock):
    client, events = make_login_client(server, clock)
    ready = client.ready()
    client.start()
    req = login_request(server)
    assert req == {"type": "login", "id": req["id"], "nick": "Olga", "password": PASSWORD}
    waiting = {"type": "private", "from": "bob", "to": "olga", "text": "call me", "mid": 4,
               "ts": 1.0, "offline": True}
    server.send(waiting)
    server.answer(req, nick="olga", offline=1)
    assert result(ready) is client
    assert client.nick == "olga"  # the account's spelling, from the ack
    assert [e["type"] for e in events] == ["private", "connected"]
    assert events[0]["offline"] is True
    joined(server, client)

    # After a reconnect: login again (not nick), then the room.
    server.drop()
    clock.advance(5)
    req = login_request(server)
    assert (req["type"], req["nick"], req["password"]) == ("login", "Olga", PASSWORD)
    server.answer(req, nick="olga", offline=0)
    rejoin = server.sent()[0]
    assert (rejoin["type"], rejoin["room"]) == ("join", "#r")
    server.answer(rejoin, room="#r", nicks=["olga"])
    assert client.connected and events[-1] == {"type": "connected", "nick": "olga",
                                               "rooms": ["#r"]}


@pytest.mark.parametrize("code", ["login_failed", "login_throttled"])
def test_a_refused_login_stops_the_client_instead_of_retrying(server, clock, code):
    client, _ = make_login_client(server, clock)
    ready = client.ready()  # no fail_after: only a fatal error can fail it
    client.start()
    refuse(server, login_request(server), code, "wrong nick or password")
    failure = result(ready)
    assert failure.check(LoginError) and failure.value.code == code
    assert "wrong nick or password" in str(failure.value)
    clock.advance(3600)
    assert server.attempts == 1  # never tried again
    assert not server.transport.connected
    assert result(client.say("#r", "x")).value.code == code
    assert result(client.ready()).check(LoginError)


def test_a_failed_login_on_a_later_reconnect_stops_the_client_too(server, clock):
    client, _ = make_login_client(server, clock)
    client.start()
    req = login_request(server)
    server.answer(req, nick="olga", offline=0)
    assert client.connected
    server.drop()  # meanwhile, the password was changed
    clock.advance(5)
    refuse(server, login_request(server), "login_failed")
    clock.advance(3600)
    assert server.attempts == 2
    assert result(client.ready()).value.code == "login_failed"


def test_a_login_the_store_could_not_check_is_retried(server, clock):
    client, _ = make_login_client(server, clock)
    ready = client.ready()
    client.start()
    refuse(server, login_request(server), "store_unavailable", "the database is down")
    clock.advance(5)
    assert server.attempts == 2
    server.answer(login_request(server), nick="olga", offline=0)
    assert result(ready) is client


def test_pushed_out_by_another_login_of_the_account_it_does_not_fight_back(server, clock):
    client, _ = make_login_client(server, clock)
    client.start()
    server.answer(login_request(server), nick="olga", offline=0)
    server.send({"type": "bye", "reason": "logged in from another connection"})
    server.drop()
    clock.advance(3600)
    assert server.attempts == 1
    assert result(client.ready()).value.code == "logged_in_elsewhere"


def test_an_empty_password_is_refused_before_connecting(clock):
    with pytest.raises(ValueError, match="password"):
        ChatClient("tcp://chat.example:9000", "olga", reactor=clock, password="")


# -- resume tokens: a reconnect logs in without the password ----------------------------
def test_a_reconnect_resumes_with_the_token_and_keeps_the_next_one(server, clock):
    client, events = make_login_client(server, clock)
    client.start()
    server.answer(login_request(server), nick="olga", offline=0, token="t1",
                  token_expires=99.0)
    assert client.connected
    server.drop()
    clock.advance(5)
    req = login_request(server)
    assert req == {"type": "resume", "id": req["id"], "nick": "Olga", "token": "t1"}
    server.answer(req, nick="olga", offline=0, token="t2", token_expires=99.0)
    assert client.connected and events[-1]["type"] == "connected"
    # Each token is good once: the next reconnect sends the one the resume gave.
    server.drop()
    clock.advance(5)
    req = login_request(server)
    assert (req["type"], req["token"]) == ("resume", "t2")


def test_a_refused_token_falls_back_to_the_password(server, clock):
    client, _ = make_login_client(server, clock)
    client.start()
    server.answer(login_request(server), nick="olga", offline=0, token="t1")
    server.drop()
    clock.advance(5)
    req = login_request(server)
    assert req["type"] == "resume"
    refuse(server, req, "resume_refused", "that resume token is not valid")
    login = server.sent()[0]
    assert login == {"type": "login", "id": login["id"], "nick": "Olga", "password": PASSWORD}
    server.answer(login, nick="olga", offline=0, token="t3")
    assert client.connected
    assert server.attempts == 2  # on the same connection, not a new one
    server.drop()
    clock.advance(5)
    assert login_request(server)["token"] == "t3"


def test_a_throttled_resume_stops_the_client_like_a_throttled_login(server, clock):
    client, _ = make_login_client(server, clock)
    client.start()
    server.answer(login_request(server), nick="olga", offline=0, token="t1")
    server.drop()
    clock.advance(5)
    refuse(server, login_request(server), "login_throttled")
    assert result(client.ready()).value.code == "login_throttled"


def test_a_server_without_tokens_gets_the_password_on_every_reconnect(server, clock):
    client, _ = make_login_client(server, clock)
    client.start()
    server.answer(login_request(server), nick="olga", offline=0)  # no "token"
    server.drop()
    clock.advance(5)
    assert login_request(server)["type"] == "login"
