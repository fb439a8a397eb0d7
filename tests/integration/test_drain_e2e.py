"""Draining a real daemon through the admin API: it stops accepting, tells each
client to reconnect elsewhere, and exits 0 once they are gone."""

import json
import socket
import urllib.error
import urllib.request

import pytest

from chatd.drain import REASON

TOKEN = "drain-token-0123456789abcdef"


def post(port, path, body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method="POST", data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def refused(port) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_drain_closes_the_doors_says_reconnect_and_exits_when_empty(tmp_path, start_daemon):
    (tmp_path / "token").write_text(TOKEN + "\n")
    d = start_daemon("--admin", "tcp:0:interface=127.0.0.1",
                     "--admin-token-file", str(tmp_path / "token"))
    alice = d.line().login("alice", "#r")
    bob = d.ws().login("bob", "#r")
    assert post(d.admin_port, "/api/drain", {"over": "soon"})[0] == 400
    status, ack = post(d.admin_port, "/api/drain", {"over": 1.0})
    assert (status, ack) == (200, {"draining": True, "sessions": 2, "over": 1.0})
    # A balancer's readiness check says "not here" at once.
    with pytest.raises(urllib.error.HTTPError) as not_ready:
        urllib.request.urlopen(f"http://127.0.0.1:{d.admin_port}/readyz", timeout=5)
    assert not_ready.value.code == 503
    assert json.loads(not_ready.value.read())["listeners"] == "not open"
    # Told why and what to do, each on its own protocol; then closed.
    assert any(REASON in str(line) for line in alice.expect_closed())
    left = bob.expect_closed()
    assert {"type": "bye", "reason": REASON} in left, left
    # Nobody new gets in meanwhile: the chat ports are closed.
    assert refused(d.line_port) and refused(d.ws_port)
    d.wait_for(lambda: d.proc.poll() is not None, "the drained daemon to exit", timeout=10)
    d.returncode = d.proc.returncode
    assert d.exited_cleanly(), d.output()
    assert "draining: listeners closing, 2 clients told to reconnect" in d.log()
