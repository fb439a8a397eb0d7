"""``since`` recovery across nodes: a client leaves node A, messages are sent on
nodes B and C (concurrently), and it resumes on B and on C: each time exactly
the missed messages, none twice, none lost, each sender's in the order sent.
Three real daemons on one PostgreSQL database and one Redis prefix."""


from .cluster import messages

ROOM = "#since"


def send(client, texts) -> list:
    """Send every text without waiting for its ack; the request ids."""
    ids = []
    for text in texts:
        client._ids += 1
        rid = f"s{client._ids}"
        client.send_json({"type": "message", "room": ROOM, "text": text, "id": rid})
        ids.append(rid)
    return ids


def acked(client, ids) -> list:
    """The mids of the acks of ``ids``."""
    mids = []
    for rid in ids:
        ack = client.expect(lambda e, rid=rid: isinstance(e, dict) and e.get("id") == rid)
        assert ack["type"] == "ack", ack
        mids.append(ack["mid"])
    return mids


def send_all(client, texts) -> list:
    return acked(client, send(client, texts))


def resume(node, nick, since):
    """Join ROOM ``since`` on ``node``: the history events the join brought."""
    client = node.ws().login(nick)
    ack = client.request({"type": "join", "room": ROOM, "since": since})
    assert ack["type"] == "ack" and "more" not in ack, ack
    history = messages(client.drain(), ROOM)
    assert all(m.get("history") for m in history), history
    return client, history


def test_resume_on_other_nodes_gets_exactly_what_was_missed(cluster):
    a, b, c = (cluster.start(name) for name in ("node-a", "node-b", "node-c"))
    alice = a.ws().login("alice", ROOM)
    bob = b.ws().login("bob", ROOM)
    carol = c.ws().login("carol", ROOM)
    [seen_mid] = send_all(bob, ["before alice left"])
    got = alice.expect({"type": "message", "text": "before alice left"})
    assert got["mid"] == seen_mid  # what alice's client records as its last id
    alice.close()

    # Sent on two nodes at once while alice is away: their commits race.
    bob_texts = [f"bob {i}" for i in range(15)]
    carol_texts = [f"carol {i}" for i in range(15)]
    for i in range(0, 15, 5):
        on_b, on_c = send(bob, bob_texts[i:i + 5]), send(carol, carol_texts[i:i + 5])
        bob_mids, carol_mids = acked(bob, on_b), acked(carol, on_c)
        assert bob_mids == sorted(bob_mids) and carol_mids == sorted(carol_mids)
    missed = bob_texts + carol_texts

    on_b, history_b = resume(b, "alice", seen_mid)
    on_c, history_c = resume(c, "alice-too", seen_mid)
    for history in (history_b, history_c):
        mids = [m["mid"] for m in history]
        assert mids == sorted(set(mids)), "ids once each, increasing"
        assert sorted(m["text"] for m in history) == sorted(missed), "exactly the missed ones"
        texts = [m["text"] for m in history]
        assert [t for t in texts if t.startswith("bob")] == bob_texts  # order sent
        assert [t for t in texts if t.startswith("carol")] == carol_texts

    # And live traffic goes on after the history, once, on both resumed clients.
    [after] = send_all(bob, ["after the resume"])
    for client in (on_b, on_c):
        live = client.expect({"type": "message", "text": "after the resume"})
        assert live["mid"] == after and not live.get("history")
        client.poll(0.3)
        assert not [m for m in messages(client.drain(), ROOM)
                    if m["text"] == "after the resume"], "delivered twice"
