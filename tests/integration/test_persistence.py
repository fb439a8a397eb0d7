"""History, accounts, offline messages and moderation through the real daemon (SQLite)."""

import base64
import sqlite3

import argon2

from chatd.store.sqlite import FILENAME

from .persist_helpers import ask, jline, ok, until_ack

PASSWORDS = ["correct horse battery", "s3cret-olga-pass", "the new password!", "nopenopenope"]
# Every registration here comes from 127.0.0.1: lift the per-address limit
# (test_registrations_are_throttled_per_address runs a daemon with the default).
DAEMON_OPTIONS = ["--rate", "1000", "--burst", "1000", "--history", "5", "--nick-interval", "0.01",
                  "--register-per-addr", "1000", "--register-per-minute", "1000"]


def say(client, room, text) -> dict:
    return ok(client, type="message", room=room, text=text)


def test_scrollback_on_join_then_live(daemon):
    alice = jline(daemon, "hal", "#scroll")
    acks = [say(alice, "#scroll", f"line {i}") for i in range(8)]
    mids = [a["mid"] for a in acks]
    assert mids == sorted(mids) and len(set(mids)) == 8

    bob = jline(daemon)
    ok(bob, type="nick", nick="bo")
    bob.send_json({"type": "join", "room": "#scroll", "id": "j"})
    before, ack = until_ack(bob, "join")
    assert ack["type"] == "ack" and ack["nicks"] == ["hal", "bo"]
    history = [e for e in before if e.get("history")]
    # --history 5: the last five, oldest first, before the ack, marked as history.
    assert [(e["text"], e["mid"], e["from"]) for e in history] == [
        (f"line {i}", mids[i], "hal") for i in range(3, 8)]
    assert all(e["type"] == "message" and e["ts"] > 0 for e in history)
    live = say(alice, "#scroll", "live now")
    event = bob.expect({"type": "message", "text": "live now"})
    assert event["mid"] == live["mid"] > mids[-1] and "history" not in event
    alice.close()
    bob.close()


def test_paging_back_and_since(daemon):
    c = jline(daemon, "pager", "#pages")
    mids = [say(c, "#pages", f"p{i}")["mid"] for i in range(12)]
    c.drain()
    c.send_json({"type": "history", "room": "#pages", "before": mids[6], "limit": 4, "id": "h1"})
    before, ack = until_ack(c, "history")
    assert [e["text"] for e in before] == ["p2", "p3", "p4", "p5"]
    assert all(e["history"] for e in before)
    assert (ack["count"], ack["more"]) == (4, True)
    c.send_json({"type": "history", "room": "#pages", "before": mids[2], "limit": 4, "id": "h2"})
    before, ack = until_ack(c, "history")
    assert [e["text"] for e in before] == ["p0", "p1"] and ack["more"] is False
    c.send_json({"type": "history", "room": "#pages", "since": mids[9], "id": "h3"})
    before, ack = until_ack(c, "history")
    assert [e["text"] for e in before] == ["p10", "p11"] and ack["more"] is False
    assert ask(c, type="history", room="#pages", before=mids[6], since=mids[2])["code"] == \
        "bad_request"

    # A client that reconnects asks for everything after the last id it saw.
    again = jline(daemon, "pager2")
    again.send_json({"type": "join", "room": "#pages", "since": mids[3], "id": "j"})
    before, ack = until_ack(again, "join")
    assert [e["text"] for e in before if e.get("history")] == [f"p{i}" for i in range(4, 12)]
    assert "more" not in ack

    # Text mode: /history #room [before-id] [count]
    t = daemon.line().login("texter", "#pages")
    t.drain()  # the join's own scrollback
    t.send(f"/history #pages {mids[11]} 2")
    assert t.expect("[history] [#pages]") == "[history] [#pages] <pager> p9"
    assert t.expect("[history] [#pages]") == "[history] [#pages] <pager> p10"
    assert t.expect("messages of #pages history") == (
        f"* 2 messages of #pages history; older: /history #pages {mids[9]}")
    for x in (c, again, t):
        x.close()


def test_register_login_and_nick_protection(daemon):
    owner = jline(daemon, "regina")
    assert ask(owner, type="register", password="short")["code"] == "bad_password"
    ok(owner, type="register", password=PASSWORDS[0])
    assert ask(owner, type="register", password=PASSWORDS[0])["code"] == "already_registered"
    owner.close()

    guest = jline(daemon)
    # Nobody who has not logged in may take it, in any case spelling.
    err = ask(guest, type="nick", nick="Regina")
    assert err["code"] == "nick_registered" and "/login" in err["message"]
    err = ask(guest, type="login", nick="regina", password="wrong password")
    assert err["code"] == "login_failed"
    ack = ok(guest, type="login", nick="regina", password=PASSWORDS[0])
    assert ack["nick"] == "regina"
    # Logged in, the owner can change password; the old one stops working.
    assert ask(guest, type="password", old="not it at all", new=PASSWORDS[2])["code"] == (
        "login_failed")
    ok(guest, type="password", old=PASSWORDS[0], new=PASSWORDS[2])
    other = jline(daemon, "someone")
    assert ask(other, type="login", nick="regina", password=PASSWORDS[0])["code"] == (
        "login_failed")
    # A second login closes the first connection.
    ok(other, type="login", nick="regina", password=PASSWORDS[2])
    assert any(e.get("type") == "bye" for e in guest.expect_closed())
    other.close()


def test_guest_holding_a_nick_registered_elsewhere_is_renamed(daemon):
    guest = daemon.line().login("ursula")
    # Another node sharing the database registers the nick meanwhile.
    hasher = argon2.PasswordHasher()
    db = sqlite3.connect(daemon.workdir / "chatd-data" / FILENAME, timeout=5)
    with db:
        db.execute("INSERT INTO accounts VALUES (?, ?, ?, ?)",
                   ("ursula", "ursula", hasher.hash(PASSWORDS[1]), 1.0))
    db.close()
    owner = jline(daemon)
    ack = ok(owner, type="login", nick="ursula", password=PASSWORDS[1])
    assert ack["nick"] == "ursula"
    notice = guest.expect("is a registered nick")
    assert "its owner has logged in; you are now Guest" in notice
    guest.send("/nick ursula")
    assert "nick_taken" in guest.expect("! error")
    guest.close()
    owner.close()


def test_offline_private_messages_delivered_once_in_order(daemon):
    olga = jline(daemon, "olga")
    ok(olga, type="register", password=PASSWORDS[1])
    olga.close()
    sender = jline(daemon, "sender")
    daemon.wait_for(lambda: ask(sender, type="private", to="olga", text="probe").get("queued"),
                    "olga offline")
    for i in range(3):
        ack = ok(sender, type="private", to="olga", text=f"while away {i}")
        assert ack["queued"] is True
    err = ask(sender, type="private", to="nobody-here", text="hi")
    assert err["code"] == "no_such_nick"
    # Text mode says it was queued.
    t = daemon.line().login("texty")
    t.send("/msg OLGA one more")
    assert t.expect("offline") == "* OLGA is offline; your message is queued for their next login"

    back = jline(daemon)
    back.send_json({"type": "login", "nick": "olga", "password": PASSWORDS[1], "id": "l"})
    before, ack = until_ack(back, "login")
    got = [(e["from"], e["text"]) for e in before if e.get("type") == "private"]
    assert got == ([("sender", "probe")] + [("sender", f"while away {i}") for i in range(3)]
                   + [("texty", "one more")])
    assert all(e["offline"] and e["to"] == "olga" for e in before if e.get("type") == "private")
    assert ack["offline"] == 5
    back.close()
    again = jline(daemon)
    again.send_json({"type": "login", "nick": "olga", "password": PASSWORDS[1], "id": "l2"})
    before, ack = until_ack(again, "login")
    assert ack["offline"] == 0 and not [e for e in before if e.get("type") == "private"]
    for x in (again, sender, t):
        x.close()


def test_failed_logins_throttle_the_attacker_never_the_owner(daemon):
    target = jline(daemon, "tess")
    ok(target, type="register", password=PASSWORDS[0])
    target.close()
    attacker = jline(daemon)
    answers = [ask(attacker, type="login", nick="tess", password=f"guess {i}")
               for i in range(6)]
    assert [a["code"] for a in answers] == ["login_failed"] * 5 + ["login_throttled"]
    assert not any(ch.isdigit() for ch in answers[-1]["message"])  # no "try in N s"
    # The owner, on a connection that has not failed, gets in.
    owner = jline(daemon)
    assert ok(owner, type="login", nick="tess", password=PASSWORDS[0])["nick"] == "tess"
    attacker.close()
    owner.close()


def test_moderation_topic_kick_ban_invite_and_password(daemon):
    op = jline(daemon, "opal")
    ok(op, type="register", password=PASSWORDS[0])
    ok(op, type="join", room="#mod")  # the creator is the first operator
    ack = ok(op, type="topic", room="#mod", topic="be nice")
    assert ack["topic"] == "be nice"
    user = jline(daemon, "mal", "#mod")
    assert ask(user, type="topic", room="#mod", topic="mine")["code"] == "not_operator"
    assert ask(user, type="kick", room="#mod", nick="opal")["code"] == "not_operator"

    ok(op, type="kick", room="#mod", nick="mal", reason="calm down")
    kick = user.expect({"type": "kick"})
    assert (kick["nick"], kick["by"], kick["reason"]) == ("mal", "opal", "calm down")
    ack = ok(user, type="join", room="#mod")
    assert ack["topic"] == "be nice"

    ok(op, type="ban", room="#mod", nick="mal")
    user.expect({"type": "kick", "nick": "mal", "reason": "banned"})
    assert ask(user, type="join", room="#mod")["code"] == "banned"
    ok(op, type="unban", room="#mod", nick="mal")
    ok(user, type="join", room="#mod")
    ok(op, type="kick", room="#mod", nick="mal")

    ok(op, type="mode", room="#mod", invite_only=True)
    assert ask(user, type="join", room="#mod")["code"] == "invite_only"
    ok(op, type="invite", room="#mod", nick="mal")
    user.expect({"type": "invite", "room": "#mod", "by": "opal"})
    ok(user, type="join", room="#mod")
    ok(op, type="kick", room="#mod", nick="mal")
    assert ask(user, type="join", room="#mod")["code"] == "invite_only"  # invites are used up

    ok(op, type="mode", room="#mod", invite_only=False, password="letmein")
    assert ask(user, type="join", room="#mod")["code"] == "bad_room_password"
    assert ask(user, type="join", room="#mod", password="wrong")["code"] == "bad_room_password"
    ok(user, type="join", room="#mod", password="letmein")

    # Text mode, current room implied.
    t = daemon.line().login("tom", "#textmod")
    t.send("/topic hello from text")
    assert t.expect("set the topic") == "* tom set the topic of #textmod: hello from text"
    t.send("/mode +k pw1")
    assert t.expect("changed the modes of #textmod") == \
        "* tom changed the modes of #textmod: now open to everyone, with a password"
    for x in (op, user, t):
        x.close()


def test_websocket_login_at_connect_time(daemon):
    owner = jline(daemon, "wanda")
    ok(owner, type="register", password=PASSWORDS[3])
    owner.close()
    token = base64.b64encode(f"wanda:{PASSWORDS[3]}".encode()).decode()
    ws = daemon.ws(header=[f"Authorization: Basic {token}"])
    ws.expect({"type": "hello"})
    ack = ws.expect({"type": "ack", "request": "login", "id": "connect"})
    assert ack["nick"] == "wanda"
    bad = base64.b64encode(b"wanda:wrong password").decode()
    ws2 = daemon.ws(header=[f"Authorization: Basic {bad}"])
    err = ws2.expect({"type": "error", "request": "login", "id": "connect"})
    assert err["code"] == "login_failed"
    ws.close()
    ws2.close()
    assert token not in daemon.log() and bad not in daemon.log()


def test_passwords_never_logged(daemon):
    log = daemon.log()
    assert "logged in" in log and "failed login" in log
    for password in PASSWORDS:
        assert password not in log


def test_registrations_are_throttled_per_address(start_daemon):
    d = start_daemon("--register-per-addr", "2")
    answers = []
    for i in range(3):
        c = jline(d, f"reg{i}")
        answers.append(ask(c, type="register", password=PASSWORDS[0]))
        c.close()
    assert [a["type"] for a in answers[:2]] == ["ack", "ack"]
    assert answers[2]["code"] == "register_throttled"
