"""``--log-format json`` through the real daemon: every line is a JSON object with
fields, the events that matter are there, and no password or message text is."""

import json

# Distinctive strings a scripted session types; none may reach the log.
PASSWORD = "Pw-zebra-quokka-7731"
WRONG_PASSWORD = "Wrong-marmot-1234x"
SECRETS = [PASSWORD, WRONG_PASSWORD, "Distinctive-walrus-9981", "Secret-pm-narwhal-4242",
           "Wall-okapi-5555", "Action-ibis-3141"]
FAST_HASH = ("--argon2-memory-cost", "8192", "--argon2-time-cost", "1")


def records(daemon) -> list:
    lines = [line for line in daemon.log().splitlines() if line.strip()]
    assert lines
    out = []
    for line in lines:
        record = json.loads(line)  # every line, twistd's own included
        assert {"timestamp", "time", "level", "event", "namespace"} <= set(record), record
        out.append(record)
    return out


def find(recs, **fields) -> list:
    return [r for r in recs if all(r.get(k) == v for k, v in fields.items())]


def test_a_scripted_session_is_logged_with_fields_and_without_secrets(start_daemon):
    d = start_daemon("--log-format", "json", "--operators", "root", "--max-per-ip", "8",
                     *FAST_HASH)
    first = d.line().login("root")
    first.send(f"/register {PASSWORD}")
    first.expect("is now registered")
    first.send("/quit")
    first.expect_closed()
    root = d.line()
    root.expect("Welcome")
    root.send(f"/login root {PASSWORD}")
    root.expect("you are logged in as root")
    root.send("/join #den")  # first in: the room's operator
    root.expect("now talking in #den")

    eve = d.line().login("eve")
    eve.send(f"/login root {WRONG_PASSWORD}")
    eve.expect("login_failed")
    alice = d.line().login("alice", "#den")
    bob = d.line().login("bob", "#den")
    alice.send("Distinctive-walrus-9981")
    bob.expect("Distinctive-walrus-9981")
    alice.send("/me Action-ibis-3141")
    bob.expect("Action-ibis-3141")
    alice.send("/msg bob Secret-pm-narwhal-4242")
    bob.expect("Secret-pm-narwhal-4242")
    bob.send("/nick alice")
    bob.expect("nick_taken")

    root.send("/kick bob off-you-go")
    bob.expect("was kicked")
    root.send("/ban eve")
    root.expect("banned eve")
    root.send("/wall Wall-okapi-5555")
    alice.expect("Wall-okapi-5555")
    root.send("/gban nick:eve 10m spam")
    eve.expect_closed()
    root.send("/kill alice enough")
    alice.expect_closed()
    root.send("/sessions")
    root.expect("sessions")
    # A limit refusal: more connections from 127.0.0.1 than --max-per-ip.
    extra = [d.line() for _ in range(8)]
    extra[-1].expect("too_many_from_ip")
    for c in extra + [root, bob]:
        c.close()
    d.wait_connections(0)
    assert d.stop() == 0

    raw = d.log()
    for secret in SECRETS:
        assert secret not in raw, f"{secret!r} reached the log"
    recs = records(d)

    connects = find(recs, namespace="chatd.service.ChatService", peer="127.0.0.1")
    assert any(r["event"].startswith("session connected") and "session" in r
               for r in connects)
    closed = [r for r in connects if "closed" in r["event"]]
    assert {"nick", "reason", "session"} <= set(closed[0])
    assert any(r.get("reason") == "killed by root: enough" for r in closed)

    assert find(recs, namespace="chatd.accounts.Accounts", nick="root", host="127.0.0.1")
    assert find(recs, code="login_failed", kind="login", nick="eve")
    assert find(recs, code="nick_taken", nick="bob")
    kick = find(recs, action="kick", nick="root", target="bob", room="#den")
    assert kick and kick[0]["reason"] == "off-you-go"
    assert find(recs, action="ban", nick="root", target="eve", room="#den")

    ops = {r["action"]: r for r in recs if r.get("operator") == "root"}
    assert set(ops) >= {"wall", "gban", "kill", "sessions"}
    assert ops["gban"]["target"] == "nick:eve" and ops["gban"]["dropped"] == 1
    assert ops["kill"]["target"] == "alice" and ops["kill"]["reason"] == "enough"
    assert find(recs, code="too_many_from_ip", peer="127.0.0.1", level="warn")
    # Twistd's own lines are JSON too, and the ports can still be read from them.
    assert any("LineFactory starting on" in r["event"] for r in recs)
