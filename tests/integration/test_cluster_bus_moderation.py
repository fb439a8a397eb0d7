"""Moderation across nodes through real daemons: what an operator on one node
does to someone on another (a kick, a kill, a server ban, a notice to all) is
carried out by the node that person is on."""

import time

PASSWORD = "root-password-for-tests"
FAST_HASH = ("--argon2-memory-cost", "8192", "--argon2-time-cost", "1")


def test_operators_on_one_node_act_on_people_on_another(cluster):
    a, b = (cluster.start(name, "--operators", "root", *FAST_HASH)
            for name in ("node-a", "node-b"))
    alice = a.ws().login("alice", "#m")  # first in: the room's operator
    bob = b.ws().login("bob", "#m")
    carol = b.ws().login("carol")
    guest = b.line(source="127.0.0.2").login("guest", "#m")
    alice.expect({"type": "join", "nick": "guest"})

    # A room operator on node a kicks a member on node b.
    ack = alice.request({"type": "kick", "room": "#m", "nick": "bob", "reason": "out"})
    assert ack["type"] == "ack" and ack["nick"] == "bob", ack
    kick = bob.expect({"type": "kick", "room": "#m", "nick": "bob"})
    assert kick["by"] == "alice" and kick["reason"] == "out"
    alice.expect({"type": "kick", "nick": "bob"})
    err = bob.request({"type": "message", "room": "#m", "text": "still here?"})
    assert err["type"] == "error" and err["code"] == "not_in_room", err
    # Nobody of that name in the room on any node: refused.
    err = alice.request({"type": "kick", "room": "#m", "nick": "carol"})
    assert err["type"] == "error" and err["code"] == "no_such_nick", err

    # An invite-only room: an invite to someone on node b lets them in there.
    ack = alice.request({"type": "mode", "room": "#m", "invite_only": True})
    assert ack["type"] == "ack", ack
    dave = b.ws().login("dave")
    err = dave.request({"type": "join", "room": "#m"})
    assert err["type"] == "error" and err["code"] == "invite_only", err
    ack = alice.request({"type": "invite", "room": "#m", "nick": "dave"})
    assert ack["type"] == "ack", ack
    assert dave.expect({"type": "invite", "room": "#m"})["by"] == "alice"
    ack = dave.request({"type": "join", "room": "#m"})
    assert ack["type"] == "ack", ack
    # ... and made an operator there from node a: an operator's powers on node b.
    err = dave.request({"type": "topic", "room": "#m", "topic": "dave's"})
    assert err["type"] == "error" and err["code"] == "not_operator", err
    ack = alice.request({"type": "op", "room": "#m", "nick": "dave"})
    assert ack["type"] == "ack" and ack["nick"] == "dave", ack
    assert dave.expect({"type": "op", "room": "#m", "nick": "dave"})["by"] == "alice"
    ack = dave.request({"type": "topic", "room": "#m", "topic": "dave's"})
    assert ack["type"] == "ack", ack
    assert alice.expect({"type": "topic", "room": "#m"})["topic"] == "dave's"
    err = alice.request({"type": "invite", "room": "#m", "nick": "nobody"})
    assert err["type"] == "error" and err["code"] == "no_such_nick", err

    # A server operator on node a: a notice reaches node b, a kill and a
    # server ban are carried out there.
    root = a.line().login("root")
    root.send(f"/register {PASSWORD}")
    root.expect("is now registered")
    root.send("/wall maintenance soon")
    assert carol.expect({"type": "notice"})["text"] == "[server notice from root] maintenance soon"
    root.send("/kill carol bye now")
    root.expect("carol was disconnected")
    carol.expect_closed()
    root.send("/kill nobody")
    root.expect("no_such_nick")

    root.send("/gban addr:127.0.0.2 0 abuse")
    root.expect("banned addr:127.0.0.2/32 permanently")
    guest.expect_closed()
    assert b.line(source="127.0.0.2").expect_closed() == [
        "! error banned_from_server: you are banned from this server permanently: abuse"]
    root.send("/ungban addr:127.0.0.2")
    root.expect("addr:127.0.0.2/32")
    # Lifted on node b too (the change crosses Redis: bounded wait).
    deadline = time.monotonic() + 10
    while True:
        first = b.line(source="127.0.0.2").read(5)
        if "Welcome" in first or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert "Welcome" in first, first
