"""Moderation of one kept room from two nodes at the same moment: a ban made on
node A and an operator made on node B are both kept, both nodes enforce both,
and a node started afterwards loads both from the shared database (and its
operator kicks a member on another node)."""


from .persist_helpers import ask, jline, ok

FAST_HASH = ("--argon2-memory-cost", "8192", "--argon2-time-cost", "1")
ROOM = "#mod"
PASSWORD = "a long enough password"


def registered(node, nick, room=None):
    c = jline(node, nick)
    ok(c, type="register", password=PASSWORD)
    if room is not None:
        ok(c, type="join", room=room)
    return c


def logged_in(node, nick, room=None):
    c = jline(node, f"guest{nick}")
    ok(c, type="login", nick=nick, password=PASSWORD)
    if room is not None:
        ok(c, type="join", room=room)
    return c


def test_a_ban_on_a_and_an_op_on_b_at_once_are_both_kept(cluster):
    a = cluster.start("mod-a", *FAST_HASH)
    b = cluster.start("mod-b", *FAST_HASH)
    # alice opens and keeps the room on A and makes bob an operator there.
    alice = registered(a, "alice", ROOM)
    ok(alice, type="keep", room=ROOM)
    bob = registered(a, "bob", ROOM)
    ok(alice, type="op", room=ROOM, nick="bob")
    bob.close()
    for nick in ("carol", "mallory"):
        registered(b, nick).close()
    # bob and carol now on B; alice stays on A.
    bob = logged_in(b, "bob", ROOM)
    carol = logged_in(b, "carol", ROOM)
    # The same moment: a ban on A, an operator on B, neither waiting for the other.
    alice.send_json({"type": "ban", "room": ROOM, "nick": "mallory", "id": "ban"})
    bob.send_json({"type": "op", "room": ROOM, "nick": "carol", "id": "op"})
    banned = alice.expect(lambda e: e.get("id") == "ban")
    opped = bob.expect(lambda e: e.get("id") == "op")
    assert banned["type"] == "ack" and banned["bans"] == ["mallory"], banned
    assert opped["type"] == "ack", opped
    # Each node has applied the other's change once its members have seen it
    # announced: a node publishes the change before the announcement, on one
    # Redis connection, so the other receives them in that order.
    bob.expect({"type": "ban", "room": ROOM, "nick": "mallory", "by": "alice"})
    alice.expect({"type": "op", "room": ROOM, "nick": "carol", "by": "bob"})
    # Each node enforces the other's change: mallory is refused on B ...
    mallory = logged_in(b, "mallory")
    refused = ask(mallory, type="join", room=ROOM)
    assert refused["type"] == "error" and refused["code"] == "banned", refused
    # ... and carol, an operator since B's change, acts as one on A.
    carol.close()
    carol = logged_in(a, "carol", ROOM)
    mode = ask(carol, type="mode", room=ROOM, invite_only=True)
    assert mode["type"] == "ack", mode
    # A node started afterwards loads both from the database.
    c = cluster.start("mod-c", *FAST_HASH)
    mallory_c = logged_in(c, "mallory")
    assert ask(mallory_c, type="join", room=ROOM)["code"] == "banned"
    carol_c = logged_in(c, "carol")
    carol.close()
    ok(carol_c, type="join", room=ROOM)  # invite-only, but an operator gets in
    dave = jline(c, "dave")
    ok(carol_c, type="invite", room=ROOM, nick="dave")
    ok(dave, type="join", room=ROOM)
    ok(carol_c, type="kick", room=ROOM, nick="dave")
    # Everyone in the room sees it, on every node.
    alice.expect({"type": "kick", "room": ROOM, "nick": "dave", "by": "carol"})
    # And an operator on C kicks a member who is on A: A does it.
    ok(carol_c, type="kick", room=ROOM, nick="alice")
    alice.expect({"type": "kick", "room": ROOM, "nick": "alice", "by": "carol"})
    carol_c.expect({"type": "kick", "room": ROOM, "nick": "alice", "by": "carol"})
