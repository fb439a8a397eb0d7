"""Through three real daemons: a nick change and a quit of a user in two rooms
reach, through Redis, only the nodes with someone in one of those rooms, and
are shown once to each member there however many of the rooms they share."""

import socket
import time

from tests.redishelp import REDIS_HOST, REDIS_PORT, _command

from .test_cluster_bus import ADMIN, get


def metric(port: int, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    _, body = get(port, "/metrics")
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == name:
                return s.value
    raise AssertionError(f"no {name} in /metrics")


def received(node) -> float:
    """Messages from other nodes this node has taken in (repeats not counted)."""
    return metric(node.admin_port, "chatd_redis_messages_total")


def numsub(prefix: str, *channels) -> dict:
    with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=5) as s:
        reply = _command(s, "PUBSUB", "NUMSUB", *(prefix + c for c in channels))
    return {reply[i].decode()[len(prefix):]: reply[i + 1] for i in range(0, len(reply), 2)}


def test_events_of_two_rooms_reach_only_the_nodes_concerned_once(cluster):
    a, b, c = (cluster.start(name, *ADMIN, "--nick-interval", "0.1")
               for name in ("node-a", "node-b", "node-c"))
    alice = a.ws().login("alice", "#x")
    assert alice.request({"type": "join", "room": "#y"})["type"] == "ack"
    bob = b.ws().login("bob", "#x")
    assert bob.request({"type": "join", "room": "#y"})["type"] == "ack"
    carl = c.ws().login("carl", "#z")
    alice.expect({"type": "join", "room": "#y", "nick": "bob"})
    assert numsub(cluster.prefix, "room:#x", "room:#y", "room:#z", "rooms") == {
        "room:#x": 2, "room:#y": 2, "room:#z": 1, "rooms": 0}
    time.sleep(0.3)  # the joins' events settle before counting
    before_b, before_c = received(b), received(c)

    ack = alice.request({"type": "nick", "nick": "alicia"})
    assert ack["type"] == "ack", ack
    bob.expect({"type": "nick", "old": "alice", "new": "alicia"})
    alice.close()
    bob.expect({"type": "quit", "nick": "alicia"})
    bob.poll(0.5)
    # Once each for bob, who shares both rooms (each came on both channels).
    seen = [e["type"] for e in bob.seen if e.get("type") in ("nick", "quit")]
    assert seen == ["nick", "quit"], bob.seen
    assert received(b) - before_b == 2
    # Node c, with nobody in #x or #y, had nothing of it.
    assert received(c) == before_c
    carl.poll(0.2)
    assert [e for e in carl.seen if e.get("type") in ("nick", "quit")] == []
