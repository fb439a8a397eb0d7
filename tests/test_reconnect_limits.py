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


def test_rejoining_rooms_with_stored_messages_is_not_creating_them(make_chat):
    """After a restart the live rooms are gone; whoever comes back first into
    each is not refused as creating too many rooms."""
    chat = make_chat(new_rooms_per_minute=5)
    rooms = [f"#r{i}" for i in range(ROOMS)]
    before = chat.line("before", fresh=False)
    for i, room in enumerate(rooms):
        if i and i % 5 == 0:
            chat.clock.advance(60)  # the allowance comes back
        before.send(f"/join {room}", f"said in {room}")
    before.send("/quit")
    assert len(chat.service.rooms) == 0  # as after a restart: nobody is anywhere
    answers = rejoin_all(chat.line(fresh=False), rooms, since=1)
    assert answers == {"n": None, **{i: None for i in range(ROOMS)}}


def test_a_new_room_past_the_allowance_is_still_refused(make_chat):
    chat = make_chat(new_rooms_per_minute=2)
    old = chat.line("old", "#old", host="10.9.9.9")
    old.send("still here")
    old.send("/part #old")
    client = chat.line("alice", fresh=False)
    client.raw()
    client.send("/join #a", "/join #b", "/join #c", "/join #old")
    lines = client.lines()
    assert [line for line in lines if "now talking" in line or "error" in line] == [
        "* now talking in #a; members: alice", "* now talking in #b; members: alice",
        "! error too_many_new_rooms: too many new rooms from your address; join an existing "
        "one or try again in a minute",
        "* now talking in #old; members: alice"]
