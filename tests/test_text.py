"""What a client renders from an event's JSON is what text mode writes for it."""

import pytest

from chatd import events as e
from chatd import text

CONVERSATION = [
    e.Message("#r", "alice", "hi", 7, 1.5),
    e.Message("#r", "alice", "waves", 8, 1.5, kind="action"),
    e.Message("#r", "alice", "old", 1, 1.0, history=True),
    e.Private("alice", "bob", "psst", 9, 2.0),
    e.Private("alice", "bob", "later", 3, 2.0, offline=True),
    e.Join("#r", "bob", 3.0),
    e.Part("#r", "bob", "gone", 3.0),
    e.NickChange("bob", "robert", 3.0),
    e.Quit("robert", "bye", 4.0),
    e.Topic("#r", "news", "alice", 5.0),
    e.Kick("#r", "mallory", "alice", "spam", 6.0),
    e.Invite("#r", "alice"),
    e.Notice("history is unavailable"),
    e.Bye("server shutting down"),
]


@pytest.mark.parametrize("event", CONVERSATION, ids=lambda ev: ev.type)
def test_text_of_the_json_is_the_text_mode_line(event):
    assert text.text_of(event.to_dict()) == text.render(event)


@pytest.mark.parametrize("d", [
    {"type": "ping", "ts": 1.0},
    {"type": "ack", "request": "who"},
    {"type": "message", "room": "#r"},  # incomplete
    {"type": "join", "room": "#r", "ts": 1.0},  # no nick
    {},
])
def test_text_of_other_or_broken_events_is_none(d):
    assert text.text_of(d) is None
