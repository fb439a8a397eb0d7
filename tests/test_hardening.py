"""What an outside attacker did to the daemon, closed: each test drives the
service as that attacker did and checks what a user would notice."""

import pytest
from fakes import FakeSink
from twisted.logger import globalLogPublisher

from chatd import wire
from chatd.service import ROOMS_PAGE


def test_register_timeout_holds_to_the_second_whatever_the_heartbeat(make_chat):
    chat = make_chat(register_timeout=5, ping_interval=30, ping_timeout=60)
    chat.service.startService()
    try:
        idle = chat.line()
        named = chat.line("alice")
        chat.clock.advance(4.5)
        assert idle.open
        chat.clock.advance(1.0)  # 5.5 s: the heartbeat (every 15 s) has not run yet
        assert not idle.open
        assert "* closing connection: registration timeout" in idle.lines()
        assert named.open
    finally:
        chat.service.stopService()


def test_who_of_a_closed_room_is_for_its_members(chat):
    op = chat.line("opal", "#club")
    op.send("/mode #club +i")
    other = chat.line("mallory")
    op.raw()
    other.send("/who #club")
    assert other.lines() == ["! error not_in_room: #club is closed; only its members see "
                             "who is there"]
    op.send("/who #club")
    assert op.lines() == ["* #club: 1 present: opal"]


def register(chat, nick):
    client = chat.line(nick)
    client.send("/register correct horse battery")
    assert "registered" in client.lines()[0]
    return client


@pytest.mark.parametrize("lookalike", ["aIice", "AIice", "a1ice", "aiice"])
def test_a_nick_that_looks_like_a_registered_one_is_refused(chat, lookalike):
    register(chat, "alice")
    mallory = chat.line()
    mallory.send(f"/nick {lookalike}")
    [line] = mallory.lines()
    assert line.startswith("! error nick_lookalike:")
    mallory.send("/nick alice_")  # a different nick is fine
    assert mallory.lines() == ["* you are now alice_"]


def test_lookalikes_of_names_registered_elsewhere_count_after_a_restart(chat):
    register(chat, "victim")
    chat.service.accounts.loaded(["victim"])  # as loaded from the store at start-up
    x = chat.line()
    x.send("/nick vlctim")
    assert x.lines()[0].startswith("! error nick_lookalike:")


@pytest.mark.parametrize("text", ["\u200b", "\u3164\u3164", " \u200d ", "\u0301\u0302",
                                  "\u2800", "\ufeff\u00ad"])
def test_messages_that_draw_nothing_are_refused(chat, text):
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    alice.raw()
    alice.send(text)
    [line] = alice.lines()
    assert line.startswith("! error empty_message:")
    assert bob.lines() == []


def test_stacked_combining_marks_are_clipped(chat):
    alice = chat.line("alice", "#r", json_mode=True)
    alice.send_json({"type": "message", "text": "Z" + "\u0336" * 600 + "ok", "id": 1})
    message = next(e for e in alice.json() if e["type"] == "message")
    assert message["text"] == "Z" + "\u0336" * 3 + "ok"


def test_ordinary_accents_and_scripts_pass_unchanged(chat):
    alice = chat.line("alice", "#r", json_mode=True)
    text = "héllo wörld, ça va? 日本語 Ελληνικά नमस्ते e\u0301"
    alice.send_json({"type": "message", "text": text, "id": 1})
    assert next(e for e in alice.json() if e["type"] == "message")["text"] == text


def test_client_text_cannot_forge_log_lines(chat):
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        ws_like = FakeSink(wire.JSONL, chat.service)
        ws_like.session = chat.service.connect(ws_like, "10.0.0.9")
        chat.service.disconnected(ws_like.session,
                                  "bye\n2026-01-01 [chatd#critical] forged\x1b[31m")
    finally:
        globalLogPublisher.removeObserver(logged.append)
    [closed] = [e for e in logged if "closed" in e.get("log_format", "")]
    assert "\n" not in closed["reason"] and "\x1b" not in closed["reason"]
    assert "\\n2026-01-01" in closed["reason"] and "\\x1b[31m" in closed["reason"]


def test_a_long_room_list_comes_in_pages(make_chat):
    chat = make_chat(max_rooms_per_session=1000, burst=10000, rate=10000.0)
    alice = chat.line("alice", json_mode=True)
    for i in range(ROOMS_PAGE + 5):
        alice.send_json({"type": "join", "room": f"#r{i:04d}"})
    alice.raw()
    alice.send_json({"type": "rooms", "id": 1})
    [ack] = alice.json()
    assert len(ack["rooms"]) == ROOMS_PAGE and ack["more"] is True
    alice.send_json({"type": "rooms", "id": 2, "after": ack["rooms"][-1]["room"]})
    [rest] = alice.json()
    assert len(rest["rooms"]) == 5 and "more" not in rest
    assert rest["rooms"][0]["room"] == f"#r{ROOMS_PAGE:04d}"


def test_offline_private_messages_are_capped_per_recipient(make_chat):
    chat = make_chat(offline_queue=3, burst=1000, rate=1000.0)
    register(chat, "olga").send("/quit")
    sender = chat.line("sam")
    for i in range(4):
        sender.send(f"/msg olga note {i}")
    lines = sender.lines()
    assert lines[:3] == ["* olga is offline; your message is queued for their next login"] * 3
    assert lines[3].startswith("! error recipient_busy:")
    olga = chat.line()
    olga.send("/login olga correct horse battery")
    got = olga.lines()
    assert [line for line in got if line.startswith("[offline]")] == [
        f"[offline] [pm sam -> olga] note {i}" for i in range(3)]
