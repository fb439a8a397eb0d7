"""Server operators through the real daemon, and the admin API on a real socket.

The daemon runs with ``--operators root``; clients from 127.0.0.2 stand in for a
banned network (the daemon listens on 127.0.0.1; Linux routes all of 127/8 to
loopback).  The admin API is mounted on a tiny Site of our own in the reactor
thread until the admin site (``--admin``) exists: a real HTTP client talks to it.
"""

import json
import urllib.error
import urllib.request

import pytest
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

from chatd.adminapi import make_api
from chatd.service import ChatService

from .reactor_thread import call, release

PASSWORD = "root-password-for-tests"
FAST_HASH = ("--argon2-memory-cost", "8192", "--argon2-time-cost", "1")
TOKEN = "integration-token-0123456789"


@pytest.fixture(scope="module", autouse=True)
def reactor_thread():
    yield
    release()


def as_root(d):
    c = d.line().login("root")
    c.send(f"/register {PASSWORD}")  # registering logs in
    c.expect("is now registered")
    return c


def test_operator_commands_across_front_ends_and_a_restart(start_daemon):
    d = start_daemon("--operators", "root", *FAST_HASH)
    root = as_root(d)
    web = d.ws().login("webby")
    guest = d.line(source="127.0.0.2").login("guest", "#x")
    plain = d.line().login("plain", "#x")

    plain.send("/wall hi")
    plain.expect("not_server_operator")

    root.send("/wall maintenance soon")
    root.expect("notice sent to 4 sessions")
    assert web.expect({"type": "notice"})["text"] == "[server notice from root] maintenance soon"
    guest.expect("maintenance soon")

    root.send("/sessions")
    root.expect("* 4 sessions")
    root.expect("guest 127.0.0.2 line rooms: #x")
    root.expect("webby 127.0.0.1 websocket")

    root.send("/gban addr:127.0.0.2 0 abuse")
    root.expect("banned addr:127.0.0.2/32 permanently; 1 sessions dropped")
    plain.expect("* guest quit (banned from this server: abuse)")
    refused = d.line(source="127.0.0.2")
    assert refused.expect_closed() == [
        "! error banned_from_server: you are banned from this server permanently: abuse"]

    root.send("/kill webby bye now")
    root.expect("webby was disconnected")
    web.expect_closed()

    # The ban is stored: it holds after a restart.
    for c in (root, plain):
        c.close()
    d.restart()
    assert d.line(source="127.0.0.2").expect_closed()[0].startswith(
        "! error banned_from_server")
    root = d.line()
    root.expect("Welcome")
    root.send(f"/login root {PASSWORD}")
    root.expect("logged in as root")
    root.send("/gbans")
    root.expect("* addr:127.0.0.2/32 permanently by root (abuse)")
    root.send("/ungban addr:127.0.0.2/32")
    root.expect("lifted")
    d.line(source="127.0.0.2").login("back")


def _http(port, method, path, body=None, token=TOKEN):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_admin_api_on_a_real_site():
    def start():
        chat = ChatService(clock=reactor)
        root = Resource()
        root.putChild(b"api", make_api(chat, TOKEN))
        return chat, reactor.listenTCP(0, Site(root), interface="127.0.0.1")

    chat, port = call(start)
    try:
        number = port.getHost().port
        assert _http(number, "GET", "/api/sessions", token=None)[0] == 401
        assert _http(number, "GET", "/api/sessions", token="nope")[0] == 401
        assert _http(number, "GET", "/api/sessions") == (200, {"sessions": [], "total": 0})
        assert _http(number, "POST", "/api/wall", {"text": "hello"}) == (200, {"sent": 0})
        status, ban = _http(number, "POST", "/api/bans",
                            {"target": "account:mallory", "duration": "7d"})
        assert status == 200 and ban["target"] == "mallory"
        assert [b["target"] for b in _http(number, "GET", "/api/bans")[1]["bans"]] == [
            "mallory"]
        assert _http(number, "DELETE", "/api/bans", {"target": "account:mallory"})[0] == 200
        assert _http(number, "POST", "/api/kill", {"nick": "nobody"})[0] == 404
    finally:
        call(port.stopListening)
        call(chat.store.close)


def test_the_admin_api_is_served_on_the_admin_endpoint_with_its_token(tmp_path, start_daemon):
    token = "t" * 24
    token_file = tmp_path / "admin-token"
    token_file.write_text(token + "\n")
    d = start_daemon("--admin", "tcp:0:interface=127.0.0.1",
                     "--admin-token-file", str(token_file))
    alice = d.line()
    alice.expect("Welcome")
    alice.send("/nick alice")
    alice.expect("you are now alice")
    url = f"http://127.0.0.1:{d.admin_port}/api/sessions"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 401
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        body = json.loads(r.read())
    assert "alice" in json.dumps(body)
