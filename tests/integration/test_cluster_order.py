"""A room's live messages reach every node in id order, with no gaps, while two
other nodes send to it at once (their publishes can cross on the way to a third
node): so a client that leaves after any message it was shown and resumes
``since`` that id, on any node, gets exactly the rest.  Three real daemons on one
PostgreSQL database and one Redis prefix."""

import time

from .cluster import messages

ROOM = "#order"
EACH = 60
FAST = ("--rate", "1000", "--burst", "1000")  # senders faster than a person


def blast(client, texts) -> list:
    """Send every text without waiting for an ack; the request ids."""
    ids = []
    for text in texts:
        client._ids += 1
        rid = f"o{client._ids}"
        client.send_json({"type": "message", "room": ROOM, "text": text, "id": rid})
        ids.append(rid)
    return ids


def live(client, count: int, timeout: float = 20.0) -> list:
    """The room's live messages as they arrive, until ``count`` of them, then a
    little longer (a duplicate would come by then)."""
    got = messages(client.drain(), ROOM)
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        client.poll(0.2)
        got += messages(client.drain(), ROOM)
    client.poll(0.5)
    return got + messages(client.drain(), ROOM)


def test_every_node_shows_a_rooms_messages_in_id_order_and_since_resumes_exactly(cluster):
    a, b, c = (cluster.start(name, *FAST) for name in ("node-a", "node-b", "node-c"))
    alice, bob = a.ws().login("alice", ROOM), b.ws().login("bob", ROOM)
    carol, cleo = c.ws().login("carol", ROOM), c.ws().login("cleo", ROOM)
    for client in (alice, bob, carol, cleo):
        client.drain()

    # Two nodes send at once: commits interleave, and so may their publishes.
    sent_a = blast(alice, [f"a{i}" for i in range(EACH)])
    sent_b = blast(bob, [f"b{i}" for i in range(EACH)])
    total = 2 * EACH
    shown = {}
    for watcher in (carol, cleo, alice, bob):
        got = live(watcher, total)
        mids = shown[watcher] = [m["mid"] for m in got]
        assert len(mids) == total, f"{len(mids)} of {total}"
        assert mids == sorted(set(mids)), "in id order, each once"
    for client, rids in ((alice, sent_a), (bob, sent_b)):
        acks = {e["id"] for e in client.seen if isinstance(e, dict) and e.get("type") == "ack"}
        assert set(rids) <= acks

    # Had carol left after any message she was shown (half way through, say),
    # what she had not been shown is exactly what "since" its id brings, on any
    # node: nothing skipped, nothing twice.
    mids = shown[carol]
    assert cluster_history(a) == mids
    cut, rest = mids[len(mids) // 2], mids[len(mids) // 2 + 1:]
    for node, nick in ((b, "carol-again"), (c, "carol-too")):
        client = node.ws().login(nick)
        ack = client.request({"type": "join", "room": ROOM, "since": cut})
        assert ack["type"] == "ack", ack
        got = [m["mid"] for m in messages(client.drain(), ROOM)]
        assert got == rest


def cluster_history(node) -> list:
    """Every message id of the room, oldest first, as a fresh client on ``node``
    reads them with ``since`` 0."""
    client = node.ws().login("reader")
    ack = client.request({"type": "join", "room": ROOM, "since": 0})
    assert ack["type"] == "ack" and "more" not in ack, ack
    mids = [m["mid"] for m in messages(client.drain(), ROOM)]
    client.close()
    return mids
