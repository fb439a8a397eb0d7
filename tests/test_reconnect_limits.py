"""A reconnect storm must not trip the server's own limits for legitimate clients:
a client that comes back logs in and rejoins every one of its rooms at once."""

from chatd.limits import Limits, TokenBucket

ROOMS = 20  # --max-rooms-per-session's default


def rejoin_all(client, rooms, since=None) -> dict:
    """What a client does after a reconnect: nick, then a join per room, all at once."""
    client.send("/json")
    client.raw()
    client.send_json({"type": "nick", "nick": "alice", "id": "n"})
    for i, room in enumerate(rooms):
        req = {"type": "join", "room": room, "id": i}
        if since is not None:
            req["since"] = since
        client.send_json(req)
    return {e["id"]: e.get("code") for e in client.json() if e["type"] in ("ack", "error")}


def test_logging_in_and_rejoining_every_room_at_once_is_not_a_flood(make_chat):
    chat = make_chat(new_rooms_per_minute=100)
    rooms = [f"#r{i}" for i in range(ROOMS)]
    answers = rejoin_all(chat.line(fresh=False), rooms)
    assert answers == {"n": None, **{i: None for i in range(ROOMS)}}


def test_the_extra_allowance_comes_once_then_the_burst_rules(make_chat):
    chat = make_chat(burst=3, rate=1.0, reconnect_burst=2)
    client = chat.line(fresh=False)
    client.raw()
    for _ in range(5):  # 3 + 2
        client.send("/ping")
    assert client.lines() == ["* pong"] * 5
    client.send("/ping")
    assert client.lines() == ["! error flood: too many requests; slow down"]
    chat.clock.advance(10)  # refilled to --burst, not beyond
    client.send(*["/ping"] * 4)
    assert client.lines() == ["* pong"] * 3 + ["! error flood: too many requests; slow down"]


def test_a_bucket_refills_to_its_capacity_only():
    bucket = TokenBucket(rate=1.0, capacity=2, now=0.0, extra=1)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]


def test_the_default_allowance_covers_a_login_and_every_room():
    limits = Limits()
    assert limits.reconnect_burst >= limits.max_rooms_per_session + 3
