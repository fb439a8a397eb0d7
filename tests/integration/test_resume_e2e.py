"""Resume tokens through the real daemon: issued at login, kept in the store
across a restart, good once, and never written to the log."""

import re

PASSWORD = "resume-password-for-tests"
FAST_HASH = ("--argon2-memory-cost", "8192", "--argon2-time-cost", "1")


def test_a_reconnect_resumes_with_the_token_which_rotates(start_daemon):
    d = start_daemon("--log-level", "debug", *FAST_HASH)
    first = d.ws().login("alice", "#r")
    reg = first.request({"type": "register", "password": PASSWORD})
    assert reg["type"] == "ack" and reg["token"], reg
    tokens = [reg["token"]]
    first.close()

    # The token is in the database, not in the process: it outlives a restart.
    d.restart()
    again = d.ws()
    again.expect({"type": "hello"})
    ack = again.request({"type": "resume", "nick": "alice", "token": tokens[0]})
    assert (ack["type"], ack["request"], ack["nick"]) == ("ack", "resume", "alice"), ack
    assert ack["token"] != tokens[0]
    tokens.append(ack["token"])
    assert again.request({"type": "join", "room": "#r"})["type"] == "ack"

    # Rotated: the old token is spent, on any connection.
    stale = d.ws()
    stale.expect({"type": "hello"})
    refused = stale.request({"type": "resume", "nick": "alice", "token": tokens[0]})
    assert (refused["type"], refused["code"]) == ("error", "resume_refused"), refused

    # Text mode: /resume with the new one; the older connection is closed.
    line = d.line()
    line.expect("Welcome")
    line.send(f"/resume alice {tokens[1]}")
    shown = line.expect(lambda x: isinstance(x, str) and "/resume alice " in x)
    tokens.append(shown.rsplit(" ", 1)[1])
    again.expect({"type": "bye"})
    line.send("/logout")
    line.expect("you are logged out")
    for c in (again, stale, line):
        c.close()

    d.stop()
    log = d.log()
    assert "resumed from" in log  # the log did see the resumes
    for token in tokens:
        assert token not in log
    # Nor anything token-shaped that a formatting slip might leak.
    assert not re.search(r"token[\"'=: ]+[A-Za-z0-9_-]{40,}", log)
