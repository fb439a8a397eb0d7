"""What survives the daemon: a restart, kill -9 in the middle of a burst, an old schema."""

import sqlite3

import argon2
import pytest

from chatd.store.migrations import LATEST, migrate
from chatd.store.sqlite import FILENAME

from .clients import Closed
from .conftest import Daemon
from .persist_helpers import ask, jline, ok

FAST = ["--rate", "100000", "--burst", "100000"]
PASSWORD = "a fine long password"


def all_messages(daemon, room) -> list:
    """Every stored message of a room, oldest first, paging forward with ``since``."""
    c = jline(daemon, "reader")
    ok(c, type="join", room=room)
    c.drain()
    got, since = [], 0
    while True:
        c.send_json({"type": "history", "room": room, "since": since, "limit": 500, "id": "h"})
        while True:
            e = c.read()
            if e.get("type") == "ack" and e.get("request") == "history":
                break
            if e.get("history"):
                got.append(e)
        if not e["more"]:
            c.close()
            return got
        since = got[-1]["mid"]


# With the windows a commit waits for the next messages and a send for the
# next writes; still nothing is acknowledged before it is committed.
WINDOWS = ["--send-window", "0.004", "--commit-window", "0.004"]


@pytest.mark.parametrize("windows", [[], WINDOWS], ids=["default", "windows"])
def test_kill_9_mid_burst_loses_no_acknowledged_message(tmp_path, start_daemon, windows):
    data = tmp_path / "data"
    first = Daemon(tmp_path / "first", ["--data-dir", str(data), *FAST, *windows]).start()
    try:
        writers = [jline(first, f"w{i}", "#burst") for i in range(4)]
        per_writer = 400
        for i, w in enumerate(writers):
            # Pipelined: all requests are on their way before any ack arrives.
            w.sock.sendall(b"".join(
                b'{"type":"message","room":"#burst","text":"w%d %d","id":%d}\n' % (i, k, k)
                for k in range(per_writer)))
        acked = {i: [] for i in range(len(writers))}

        def read_acks(i, w, until):
            while len(acked[i]) < until:
                e = w.read()
                if e.get("type") == "ack" and e.get("request") == "message":
                    acked[i].append((e["mid"], f"w{i} {e['id']}"))
        read_acks(0, writers[0], 60)
        first.kill()  # SIGKILL, mid-burst
        for i, w in enumerate(writers):
            try:
                read_acks(i, w, per_writer)  # what the server sent before it died
            except (Closed, AssertionError, TimeoutError):
                pass
            w.close()
    finally:
        first.kill()
    total_acked = sum(len(v) for v in acked.values())
    assert 60 <= total_acked < len(writers) * per_writer, "the kill did not land mid-burst"

    # The database opens cleanly and has every acknowledged message.
    check = sqlite3.connect(data / FILENAME)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()
    second = start_daemon("--data-dir", str(data), *FAST)
    stored = all_messages(second, "#burst")
    by_mid = {e["mid"]: e["text"] for e in stored}
    for i, pairs in acked.items():
        for mid, text in pairs:
            assert by_mid.get(mid) == text
        # Per sender: what was stored is exactly a prefix of what it sent, in order.
        mine = [e["text"] for e in stored if e["from"] == f"w{i}"]
        assert mine == [f"w{i} {k}" for k in range(len(mine))]
        assert len(mine) >= len(pairs)
    assert [e["mid"] for e in stored] == sorted(by_mid)
    # New messages continue after the old ids.
    w = jline(second, "after", "#burst")
    assert ok(w, type="message", room="#burst", text="after restart")["mid"] > max(by_mid)
    w.close()


def test_rooms_accounts_and_bans_survive_a_restart(tmp_path, start_daemon):
    opts = ["--data-dir", str(tmp_path / "data"), *FAST]
    first = start_daemon(*opts)
    op = jline(first, "owner")
    ok(op, type="register", password=PASSWORD)
    ok(op, type="join", room="#keep")
    ok(op, type="topic", room="#keep", topic="kept across restarts")
    assert ok(op, type="keep", room="#keep")["kept"] is True  # before and after: all stored
    ok(op, type="ban", room="#keep", nick="spammer")
    ok(op, type="mode", room="#keep", password="roompass")
    mid = ok(op, type="message", room="#keep", text="remember me")["mid"]
    # A room nobody keeps goes when it empties, and is not there after the restart.
    ok(op, type="join", room="#passing")
    ok(op, type="topic", room="#passing", topic="gone soon")
    op.close()
    assert first.stop() == 0 and first.exited_cleanly()

    second = start_daemon(*opts)
    # The room exists after the restart, empty, before anyone joins it.
    look = jline(second, "looker")
    assert ok(look, type="rooms")["rooms"] == [{"room": "#keep", "members": 0}]
    # A password room's members are its own business (and it exists: not no_such_room).
    assert ask(look, type="who", room="#keep")["code"] == "not_in_room"
    spam = jline(second, "spammer")
    assert ask(spam, type="join", room="#keep", password="roompass")["code"] == "banned"
    guest = jline(second, "guest")
    assert ask(guest, type="join", room="#keep")["code"] == "bad_room_password"
    assert ask(guest, type="nick", nick="owner")["code"] == "nick_registered"
    guest.send_json({"type": "join", "room": "#keep", "password": "roompass", "id": "j"})
    history = []
    while True:
        e = guest.read()
        if e.get("history"):
            history.append((e["mid"], e["text"]))
        if e.get("type") == "ack" and e.get("request") == "join":
            break
    assert history == [(mid, "remember me")]
    assert e["topic"] == "kept across restarts"
    # The owner is still the room's operator once logged in.
    owner = jline(second)
    ok(owner, type="login", nick="owner", password=PASSWORD)
    ok(owner, type="join", room="#keep")
    ok(owner, type="kick", room="#keep", nick="guest")
    for c in (spam, guest, owner):
        c.close()


def test_upgrades_a_database_from_the_previous_schema_version(tmp_path, start_daemon):
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / FILENAME)
    assert migrate(db.cursor(), "sqlite", target=LATEST - 1) == (0, LATEST - 1)
    db.execute("INSERT INTO messages (room_key, room, nick, text, kind, ts) "
               "VALUES ('#old', '#Old', 'ann', 'written by the old version', 'message', 1.0)")
    db.execute("INSERT INTO accounts VALUES ('ann', 'Ann', ?, 1.0)",
               (argon2.PasswordHasher().hash(PASSWORD),))
    db.commit()
    db.close()

    d = start_daemon("--data-dir", str(data), *FAST)
    assert f"schema upgraded from version {LATEST - 1} to {LATEST}" in d.log()
    c = jline(d)
    ack = ok(c, type="login", nick="ann", password=PASSWORD)
    assert ack["nick"] == "Ann"
    c.send_json({"type": "join", "room": "#Old", "id": "j"})
    e = c.expect({"history": True})
    assert (e["from"], e["text"], e["room"]) == ("ann", "written by the old version", "#Old")
    # What the new version added works on the upgraded database.
    ok(c, type="topic", room="#Old", topic="new in this version")
    c.close()
    check = sqlite3.connect(data / FILENAME)
    assert check.execute("SELECT version FROM schema_version").fetchall() == [(LATEST,)]
    check.close()
