"""Helpers for the persistence integration tests: JSON clients and request ids."""

import itertools

_ids = itertools.count(1)


def rid() -> str:
    return f"p{next(_ids)}"


def ask(client, **req) -> dict:
    """Send a request with a fresh id; return its ack or error."""
    return client.request({**req, "id": rid()})


def ok(client, **req) -> dict:
    answer = ask(client, **req)
    assert answer["type"] == "ack", answer
    return answer


def jline(daemon, nick=None, room=None, **kw):
    """A line client in JSON mode, optionally with a nick and in a room."""
    c = daemon.line(**kw)
    c.expect("Welcome")
    c.json_mode()
    if nick is not None:
        ok(c, type="nick", nick=nick)
    if room is not None:
        ok(c, type="join", room=room)
    return c


def history_events(client, room) -> list:
    """The history events that arrived (and were not consumed) for a room, in order."""
    events = [e for e in client.drain() if e.get("history") and e.get("room") == room]
    return events


def until_ack(client, request: str) -> tuple:
    """Read until the ack of ``request``; return (events before it, the ack)."""
    before = []
    while True:
        e = client.read()
        if e.get("type") in ("ack", "error") and e.get("request") == request:
            return before, e
        before.append(e)
