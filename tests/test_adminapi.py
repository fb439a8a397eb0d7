"""The admin HTTP API (chatd.adminapi), rendered in memory with twisted.web's DummyRequest."""

import json
from io import BytesIO

import pytest
from twisted.internet.address import IPv4Address
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from chatd.adminapi import make_api
from chatd.drain import DrainAck

TOKEN = "s3cret-token-0123456789"


class API:
    def __init__(self, chat):
        self.chat = chat
        self.root = Resource()
        self.root.putChild(b"api", make_api(chat.service, TOKEN))

    def call(self, method, path, body=None, token=TOKEN, raw=None):
        """(status, JSON body) of one request."""
        parts = path.lstrip("/").encode().split(b"?")[0].split(b"/")
        request = DummyRequest(parts)
        request.client = IPv4Address("TCP", "192.0.2.10", 5555)
        request.method = method.encode()
        request.path = path.encode().split(b"?")[0]
        if b"?" in path.encode():
            for pair in path.encode().split(b"?")[1].split(b"&"):
                k, _, v = pair.partition(b"=")
                request.args.setdefault(k, []).append(v)
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        request.content = BytesIO(data)
        if token is not None:
            request.requestHeaders.addRawHeader(b"authorization", f"Bearer {token}".encode())
        resource = getChildForRequest(self.root, request)
        result = resource.render(request)
        if result is not NOT_DONE_YET:
            request.write(result)
            request.finish()
        assert request.finished, "the answer should be written at once with a memory store"
        return request.responseCode, json.loads(b"".join(request.written))


@pytest.fixture
def api(chat):
    return API(chat)


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", ""])
def test_no_or_wrong_token_is_401_and_logged(api, token, logged):
    status, body = api.call("GET", "/api/sessions", token=token)
    assert (status, body["error"]) == (401, "unauthorized")
    refused = [e for e in logged if e.get("code") == "unauthorized"]
    assert refused and refused[0]["peer"] == "192.0.2.10"
    assert not any(TOKEN in repr(e) for e in logged)


def test_unknown_paths_need_the_token_too(api):
    assert api.call("GET", "/api/nothing", token=None)[0] == 401
    assert api.call("GET", "/api/nothing")[0] == 404


def test_sessions(api, chat):
    chat.line("bob", room="#a", host="10.0.0.5")
    status, body = api.call("GET", "/api/sessions")
    assert status == 200
    assert body["total"] == 1
    assert body["sessions"][0] == {"nick": "bob", "address": "10.0.0.5", "front_end": "line",
                                   "rooms": ["#a"], "idle": 0}


def test_wall(api, chat, logged):
    bob = chat.line("bob")
    assert api.call("POST", "/api/wall", {"text": "going down"}) == (200, {"sent": 1})
    assert bob.lines() == ["* [server notice from admin-api] going down"]
    assert any(e.get("action") == "wall" and e.get("operator") == "admin-api"
               for e in logged)
    assert api.call("POST", "/api/wall", {})[1]["error"] == "missing_argument"


def test_kill(api, chat):
    bob = chat.line("bob")
    assert api.call("POST", "/api/kill", {"nick": "bob", "reason": "bye"}) == (
        200, {"nick": "bob"})
    assert bob.session is None or not bob.session.attached
    status, body = api.call("POST", "/api/kill", {"nick": "bob"})
    assert (status, body["error"]) == (404, "no_such_nick")


def test_bans_round_trip(api, chat):
    bob = chat.line("bob", host="10.9.0.1")
    status, body = api.call("POST", "/api/bans", {"target": "addr:10.9.0.0/16",
                                                  "duration": "1h", "reason": "spam"})
    assert status == 200
    assert body == {"kind": "addr", "target": "10.9.0.0/16",
                    "until": chat.clock.seconds() + 3600, "dropped": 1}
    assert bob.session is None or not bob.session.attached
    bans = api.call("GET", "/api/bans")[1]["bans"]
    assert [(b["target"], b["by"], b["reason"]) for b in bans] == [
        ("10.9.0.0/16", "admin-api", "spam")]
    assert api.call("DELETE", "/api/bans?target=addr:10.9.0.0/16")[0] == 200
    assert api.call("DELETE", "/api/bans", {"target": "addr:10.9.0.0/16"})[0] == 404
    assert api.call("GET", "/api/bans") == (200, {"bans": []})


@pytest.mark.parametrize("method, path, body, status, code", [
    ("GET", "/api/wall", None, 405, "method_not_allowed"),
    ("POST", "/api/bans", {"target": "nick:bob"}, 400, "missing_argument"),
    ("POST", "/api/bans", {"target": "bob", "duration": "1h"}, 400, "bad_request"),
    ("POST", "/api/kill", {"nick": 5}, 400, "bad_request"),
    ("POST", "/api/wall", [1, 2], 400, "bad_request"),
])
def test_refusals(api, method, path, body, status, code):
    got_status, got = api.call(method, path, body)
    assert (got_status, got["error"]) == (status, code)


def test_body_that_is_not_json(api):
    assert api.call("POST", "/api/wall", raw=b"{not json")[1]["error"] == "bad_request"
    assert api.call("POST", "/api/wall", raw=b"x" * 70000)[1]["error"] == "bad_request"


def test_store_down_is_503(api, chat):
    chat.service.store.close()
    status, body = api.call("POST", "/api/bans", {"target": "nick:bob", "duration": "0"})
    assert (status, body["error"]) == (503, "store_unavailable")


def test_a_token_is_required():
    with pytest.raises(ValueError):
        make_api(object(), "")


def test_token_file_option(tmp_path):
    from twisted.python.usage import UsageError

    from chatd.tap import Options
    good = tmp_path / "token"
    good.write_text(TOKEN + "\n")
    config = Options()
    config.parseOptions(["--admin-token-file", str(good)])
    assert config["admin-token"] == TOKEN
    short = tmp_path / "short"
    short.write_text("abc")
    for path in (short, tmp_path / "missing"):
        with pytest.raises(UsageError):
            Options().parseOptions(["--admin-token-file", str(path)])


def test_drain_needs_the_token_like_every_endpoint(chat):
    started = []

    class Drain:
        def start(self, over):
            started.append(over)
            return DrainAck(True, 0, over)

    api = API(chat)
    api.root.putChild(b"api", make_api(chat.service, TOKEN, Drain()))
    for token in (None, "wrong", ""):
        assert api.call("POST", "/api/drain", {"over": 5}, token=token)[0] == 401
    assert started == []  # nothing drained on a refused request
    status, body = api.call("POST", "/api/drain", {"over": 5})
    assert (status, body["draining"], started) == (200, True, [5])
