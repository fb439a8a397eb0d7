"""chatd.client against the real daemon: both transports, and a daemon restart
under a client logged in as a registered nick (it reconnects, logs in again,
gets the private messages left meanwhile, rejoins and catches up)."""

import pytest
from twisted.internet import error
from twisted.internet.defer import fail

from chatd.client import ChatClient, RequestError, Target

from .reactor_thread import Recorder, call, release


@pytest.fixture(scope="module", autouse=True)
def reactor_thread():
    yield
    release()


def test_websocket_and_line_clients_chat(daemon):
    ws = call(lambda: ChatClient(f"ws://127.0.0.1:{daemon.ws_port}/ws", "libws").start())
    line = call(lambda: ChatClient(f"tcp://127.0.0.1:{daemon.line_port}", "libline").start())
    try:
        heard_ws = Recorder(ws, "message")
        heard_line = Recorder(line, "message", "private")
        call(ws.join, "#lib")
        call(line.join, "#lib")
        ack = call(ws.say, "#lib", "from ws")
        call(line.private, "libws", "psst")
        events = heard_line.wait(lambda es: any(e.get("mid") == ack["mid"] for e in es),
                                 "the room message on the line client")
        assert [(e["from"], e["text"]) for e in events if e["type"] == "message"] == [
            ("libws", "from ws")]
        assert heard_ws.wait(lambda es: len(es) == 1, "ws's own message")[0]["text"] == "from ws"
        try:
            call(line.join, "no-hash")
        except RequestError as e:
            assert e.code == "invalid_room"
        else:
            raise AssertionError("an invalid room was accepted")
    finally:
        call(ws.stop)
        call(line.stop)
    daemon.wait_connections(0)


class Gate:
    """A real TCP endpoint the test can cut, to choose when the client may reconnect."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.open = True

    def connect(self, factory):
        if not self.open:
            return fail(error.ConnectionRefusedError("gate closed by the test"))
        return self.endpoint.connect(factory)


def register(daemon, nick: str, password: str) -> None:
    owner = daemon.ws().login(nick)
    assert owner.request({"type": "register", "password": password})["type"] == "ack"
    owner.close()


def test_daemon_restart_under_a_logged_in_client(start_daemon):
    daemon = start_daemon()
    url = f"ws://127.0.0.1:{daemon.ws_port}/ws"
    register(daemon, "survivor", "survivor's secret")

    def make():
        from twisted.internet import reactor
        gate = Gate(Target(url).endpoint(reactor))
        client = ChatClient(url, "survivor", endpoint=gate, retry_policy=lambda attempt: 0.2,
                            password="survivor's secret")
        return client, gate
    alice, gate = call(make)
    heard = Recorder(alice, "message")
    states = Recorder(alice, "connected", "disconnected")
    privates = Recorder(alice, "private")
    call(alice.start)
    try:
        call(alice.join, "#restart")
        bob = daemon.ws().login("bob", "#restart")
        assert bob.request({"type": "message", "room": "#restart", "text": "before"})["mid"]
        heard.wait(lambda es: len(es) == 1, "the first message")
        bob.close()

        # Alice stays away until "missed" has been said on the restarted daemon.
        gate.open = False
        daemon.restart()
        states.wait(lambda es: es and es[-1]["type"] == "disconnected", "the disconnect")
        carol = daemon.ws().login("carol")
        # A guest cannot take the nick while alice is away; a message to it waits.
        assert carol.request({"type": "nick", "nick": "Survivor"})["code"] == "nick_registered"
        assert carol.request({"type": "private", "to": "survivor", "text": "call me"})[
            "queued"] is True
        assert carol.request({"type": "join", "room": "#restart"})["type"] == "ack"
        # With a store, carol's join replays "before" and the restarted daemon
        # has "missed" for alice to fetch; without one, history starts afresh.
        persistent = any(e.get("history") for e in carol.drain())
        assert carol.request({"type": "message", "room": "#restart", "text": "missed"})["mid"]

        gate.open = True
        states.wait(lambda es: es[-1]["type"] == "connected", "the reconnect")
        assert states.snapshot()[-1]["rooms"] == ["#restart"]
        assert states.snapshot()[-1]["nick"] == "survivor"
        # Only a login gets it, and before the client says it is back.
        assert [(e["from"], e["text"], e.get("offline")) for e in privates.snapshot()] == [
            ("carol", "call me", True)]
        carol.request({"type": "message", "room": "#restart", "text": "after"})
        events = heard.wait(lambda es: es and es[-1]["text"] == "after", "the live message")
        want = ["before", "missed", "after"] if persistent else ["before", "after"]
        assert [e["text"] for e in events] == want
        if persistent:
            assert events[1].get("history") is True
        assert call(alice.who, "#restart")["nicks"] == ["carol", "survivor"]
        carol.close()
    finally:
        call(alice.stop)
