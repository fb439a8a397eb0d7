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
    chat = make_chat(max_rooms_per_session=1000, burst=10000, rate=10000.0,
                     new_rooms_per_minute=1000)
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


# -- rooms: nobody's room goes when it empties; keeping one is an account's act -------
def test_a_room_nobody_keeps_goes_with_its_state_when_it_empties(chat):
    alice = chat.line("alice", "#tmp")
    alice.send("/topic #tmp passing through", "/mode #tmp +i", "/part #tmp")
    bob = chat.line("bob")
    bob.send("/rooms", "/join #tmp", "/topic #tmp")
    got = bob.lines()
    assert got[0] == "* no rooms yet; /join #name creates one"
    assert "* #tmp has no topic" in got  # a new room: not invite-only, no topic
    assert len(chat.service.room_states) == 1  # only the live one: nothing piles up


def test_an_operator_with_an_account_keeps_a_room(chat):
    owner = register(chat, "owner")
    owner.send("/join #club", "/topic #club members only", "/keep #club")
    assert owner.lines()[-1].startswith("* #club is kept")
    owner.send("/part #club")
    looker = chat.line("looker")
    looker.send("/rooms", "/join #club")
    got = looker.lines()
    assert got[0] == "* rooms: #club (0)"
    assert "* topic: members only" in got
    assert chat.service.store.db.rooms["#club"].owner == "owner"


def test_keeping_needs_an_account_an_operator_and_stays_under_the_cap(make_chat):
    chat = make_chat(max_kept_rooms=1, burst=1000, rate=1000.0)
    guest = chat.line("guest", "#g")
    guest.send("/keep")
    assert guest.lines()[0].startswith("! error not_logged_in:")
    owner = register(chat, "owner")
    owner.send("/join #g", "/keep #g")
    assert owner.lines()[-1].startswith("! error not_operator:")
    owner.send("/join #mine", "/keep #mine", "/keep #mine", "/join #other", "/keep #other")
    got = [line for line in owner.lines() if line.startswith(("! error", "* #"))]
    assert got[0].startswith("* #mine is kept")
    assert got[1].startswith("! error already_kept:")
    assert got[-1].startswith("! error too_many_kept:")
    owner.send("/unkeep #mine")
    assert owner.lines() == ["* #mine is no longer kept; it goes when its last member leaves"]
    assert "#mine" not in chat.service.store.db.rooms


def test_only_the_keeper_can_unkeep(chat):
    owner = register(chat, "owner")
    owner.send("/join #k", "/keep #k")
    other = chat.line("other", "#k")
    owner.send("/op #k other")
    other.raw()
    other.send("/unkeep #k")
    assert other.lines()[0].startswith("! error not_operator:")


def test_new_rooms_are_rate_limited_per_address_across_reconnects(make_chat):
    chat = make_chat(new_rooms_per_minute=3, burst=1000, rate=1000.0)
    first = chat.line("a1", host="10.9.9.9")
    first.send("/join #n1", "/join #n2")
    first.transport.loseConnection()
    again = chat.line("a2", host="10.9.9.9")  # reconnecting does not reset it
    again.raw()
    again.send("/join #n3", "/join #n4")
    got = again.lines()
    assert got[-1].startswith("! error too_many_new_rooms:")
    again.send("/join #n3")  # an existing room is always fine
    assert again.lines()[-1].startswith("* now talking in #n3")
    other = chat.line("b", "#elsewhere", host="10.9.9.10")  # another address is unaffected
    assert other.open
    chat.clock.advance(60)
    again.send("/join #n5")
    assert again.lines()[-1].startswith("* now talking in #n5")


def test_topics_and_reasons_are_clipped_like_messages(chat):
    op = chat.line("opal", "#z", json_mode=True)
    other = chat.line("other", "#z", json_mode=True)
    op.send_json({"type": "topic", "room": "#z", "topic": "T" + "\u0336" * 50})
    other.send_json({"type": "part", "room": "#z", "reason": "bye" + "\u0301" * 50})
    got = op.json()
    [topic] = [e for e in got if e["type"] == "topic"]
    [part] = [e for e in got if e["type"] == "part"]
    assert topic["topic"] == "T" + "\u0336" * 3
    assert part["reason"] == "bye" + "\u0301" * 3


def test_a_room_that_empties_while_it_is_unkept_is_forgotten(chat):
    owner = register(chat, "owner")
    owner.send("/join #k", "/keep #k")
    store = chat.service.store
    from twisted.internet.defer import Deferred
    gate = Deferred()
    real = store.delete_room
    store.delete_room = lambda key: gate.addCallback(lambda _: real(key))
    owner.send("/unkeep #k", "/part #k")  # the room empties while the store works
    gate.callback(None)
    assert chat.service.room_states.get("#k") is None


def test_private_messages_are_not_counted_as_the_recipients_replies(chat, monkeypatch):
    from chatd.outbuf import OutputQueue
    bob = chat.line("bob")
    alice = chat.line("alice")
    counted = []
    real = OutputQueue.write_counted
    monkeypatch.setattr(OutputQueue, "write_counted",
                        lambda q, data: (counted.append(q), real(q, data)))
    alice.send("/msg bob hi")
    assert bob.lines() == ["[pm alice -> bob] hi"]
    assert bob.proto.out not in counted  # someone else's event, like a broadcast
    assert alice.proto.out in counted  # alice's own echo and ack are her replies


def test_a_keep_the_store_half_refuses_is_taken_back(chat):
    from twisted.internet.defer import fail

    from chatd.store import StoreUnavailable
    owner = register(chat, "owner")
    owner.send("/join #half", "/ban #half mallory")
    store = chat.service.store
    store.add_room_entry = lambda *a: fail(StoreUnavailable("down"))
    owner.raw()
    owner.send("/keep #half")
    assert owner.lines()[0].startswith("! error store_unavailable:")
    assert "#half" not in store.db.rooms  # no kept room with its bans missing
    assert not chat.service.room_states.is_kept("#half")
