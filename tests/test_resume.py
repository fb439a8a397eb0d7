"""Resume tokens (chatd.accounts): a reconnect logs in without the password.

Issued by login and register, good once (``resume`` rotates them), expiring
after --resume-ttl, revoked by logout, a password change and an operator's
kill or gban; refusals count against the login throttle.  In memory, on a Clock.
"""

import pytest
from fakes import InlinePasswords
from twisted.logger import formatEvent, globalLogPublisher

from chatd.accounts import token_hash

PASSWORD = "correct horse battery"


class CountingPasswords(InlinePasswords):
    """Counts the argon2 work: a resume must do none."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def hash(self, password):
        self.calls += 1
        return super().hash(password)

    def verify(self, password_hash, password):
        self.calls += 1
        return super().verify(password_hash, password)


def ask(client, req):
    """Send one JSON request; its single answer (ack or error)."""
    client.raw()
    client.send_json(req)
    answers = [e for e in client.json() if e["type"] in ("ack", "error")]
    assert len(answers) == 1, answers
    return answers[0]


def register(chat, nick="alice", host="10.0.0.1"):
    c = chat.line(nick, host=host, json_mode=True)
    return c, ask(c, {"type": "register", "password": PASSWORD})


def resume(chat, token, nick="alice", host="10.0.0.5"):
    c = chat.line(host=host, json_mode=True)
    return c, ask(c, {"type": "resume", "nick": nick, "token": token})


def refused(answer) -> bool:
    return answer["type"] == "error" and answer["code"] == "resume_refused"


@pytest.fixture
def counting(make_chat):
    chat = make_chat()
    chat.service.accounts._passwords = CountingPasswords()
    return chat


def test_register_and_login_acks_carry_a_token_that_expires_after_the_ttl(chat):
    _, reg = register(chat)
    now = chat.clock.seconds()
    assert reg["request"] == "register" and len(reg["token"]) >= 43
    assert reg["token_expires"] == now + chat.service.limits.resume_ttl == now + 7 * 86400
    c = chat.line(json_mode=True)
    login = ask(c, {"type": "login", "nick": "alice", "password": PASSWORD})
    assert login["request"] == "login" and login["token"] not in (None, reg["token"])
    # Only hashes are stored, never the token itself.
    stored = chat.service.store.db.resume_tokens
    assert token_hash(login["token"]) in stored and login["token"] not in stored


def test_resume_logs_in_without_argon2_once_and_rotates_the_token(counting):
    chat = counting
    old, reg = register(chat)
    old.send("/join #r")
    calls = chat.service.accounts.passwords.calls
    c, ack = resume(chat, reg["token"])
    assert (ack["type"], ack["request"], ack["nick"], ack["offline"]) == (
        "ack", "resume", "alice", 0)
    assert ack["token"] != reg["token"]
    assert chat.service.accounts.passwords.calls == calls  # no hashing at all
    assert c.session.account == "alice" and c.session.nick == "alice"
    assert not old.open  # the older login is closed, as by login
    # The spent token is refused; the new one works (once).
    _, again = resume(chat, reg["token"], host="10.0.0.6")
    assert refused(again)
    _, next_ = resume(chat, ack["token"], host="10.0.0.7")
    assert next_["type"] == "ack"


def test_resume_takes_the_nick_from_a_guest_and_delivers_offline_messages(chat):
    owner, reg = register(chat)
    owner.send_json({"type": "quit"})
    bob = chat.line("bob", json_mode=True)
    assert ask(bob, {"type": "private", "to": "alice", "text": "call me"})["queued"]
    c = chat.line(host="10.0.0.5", json_mode=True)
    c.raw()
    c.send_json({"type": "resume", "nick": "Alice", "token": reg["token"], "id": 1})
    events = c.json()
    assert [e["type"] for e in events][-2:] == ["private", "ack"]
    assert events[-2]["offline"] is True and events[-1]["offline"] == 1


def test_an_expired_token_is_refused(make_chat):
    chat = make_chat(resume_ttl=60.0)
    _, reg = register(chat)
    assert reg["token_expires"] == chat.clock.seconds() + 60
    chat.clock.advance(60)
    _, ack = resume(chat, reg["token"])
    assert refused(ack)


def test_logout_revokes_every_token_and_leaves_a_guest(chat):
    _, reg = register(chat)
    # A second device's token: logging out on one revokes both.
    other = ask(chat.line(json_mode=True, host="10.0.0.3"),
                {"type": "login", "nick": "alice", "password": PASSWORD})
    client, ack = resume(chat, other["token"], host="10.0.0.4")
    out = ask(client, {"type": "logout"})
    assert out["request"] == "logout" and out["nick"].startswith("Guest")
    assert client.session.account is None and client.open
    assert refused(resume(chat, ack["token"], host="10.0.0.8")[1])
    assert refused(resume(chat, reg["token"], host="10.0.0.9")[1])
    assert ask(client, {"type": "logout"})["code"] == "not_logged_in"


def test_logout_keeps_a_nick_that_is_not_the_accounts(chat):
    c, _ = register(chat)
    chat.clock.advance(chat.service.limits.nick_interval)
    assert ask(c, {"type": "nick", "nick": "alice_away"})["type"] == "ack"
    assert ask(c, {"type": "logout"})["nick"] == "alice_away"


def test_a_password_change_revokes_the_tokens_and_gives_a_new_one(chat):
    c, reg = register(chat)
    ack = ask(c, {"type": "password", "old": PASSWORD, "new": "battery staple horse"})
    assert ack["type"] == "ack" and ack["token"] != reg["token"]
    assert refused(resume(chat, reg["token"])[1])
    assert resume(chat, ack["token"], host="10.0.0.6")[1]["type"] == "ack"


def operator(chat, nick="root"):
    chat.service.operators = frozenset({nick})
    return register(chat, nick, host="10.0.0.9")[0]


def test_an_operators_kill_revokes_the_accounts_tokens(chat):
    root = operator(chat)
    _, reg = register(chat)
    assert ask(root, {"type": "kill", "nick": "alice"})["type"] == "ack"
    assert refused(resume(chat, reg["token"])[1])


@pytest.mark.parametrize("target", ["nick:alice", "account:alice"])
def test_an_operators_gban_revokes_the_accounts_tokens(chat, target):
    root = operator(chat)
    _, reg = register(chat)
    assert ask(root, {"type": "gban", "target": target, "duration": "10m"})["type"] == "ack"
    assert ask(root, {"type": "ungban", "target": target})["type"] == "ack"
    # Lifting the ban does not bring the tokens back.
    assert refused(resume(chat, reg["token"])[1])


def test_refusals(chat):
    _, alice = register(chat)
    _, bob = register(chat, "bob", host="10.0.0.2")
    # Bob's token does not log in as alice, and is spent by the attempt.
    assert refused(resume(chat, bob["token"], nick="alice")[1])
    assert refused(resume(chat, bob["token"], nick="bob", host="10.0.0.6")[1])
    assert refused(resume(chat, "not-a-token", host="10.0.0.7")[1])
    c = chat.line(json_mode=True, host="10.0.0.8")
    assert ask(c, {"type": "resume", "nick": "alice"})["code"] == "missing_argument"
    assert ask(c, {"type": "resume", "nick": "alice", "token": 5})["code"] == "missing_argument"
    # Alice's own token was untouched by all that.
    assert resume(chat, alice["token"], host="10.0.0.9")[1]["type"] == "ack"


def test_failed_resumes_count_against_the_login_throttle(make_chat):
    chat = make_chat(login_fails_per_conn=2)
    _, reg = register(chat)
    c = chat.line(json_mode=True, host="10.0.0.5")
    for _ in range(2):
        assert refused(ask(c, {"type": "resume", "nick": "alice", "token": "guess"}))
    # The allowance is spent: even the right token waits, and is not spent.
    answer = ask(c, {"type": "resume", "nick": "alice", "token": reg["token"]})
    assert answer["code"] == "login_throttled"
    assert ask(c, {"type": "login", "nick": "alice", "password": PASSWORD})["code"] == (
        "login_throttled")
    assert resume(chat, reg["token"], host="10.0.0.6")[1]["type"] == "ack"


def test_text_mode_shows_the_token_and_resumes_with_it(chat):
    c = chat.line("alice")
    c.send(f"/register {PASSWORD}")
    line = [x for x in c.lines() if "/resume" in x][0]
    token = line.rsplit(" ", 1)[1]
    t = chat.line(host="10.0.0.5")
    t.send(f"/resume alice {token}")
    assert any(x.startswith("* you are logged in as alice") for x in t.lines())
    spent = chat.line(host="10.0.0.6")
    spent.send(f"/resume alice {token}")
    assert any("resume_refused" in x for x in spent.lines())
    t.send("/logout")
    assert any("logged out" in x for x in t.lines())


def test_tokens_never_reach_the_log(chat):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        _, reg = register(chat)
        c, ack = resume(chat, reg["token"])
        resume(chat, reg["token"], host="10.0.0.6")  # refused
        ask(c, {"type": "logout"})
    finally:
        globalLogPublisher.removeObserver(events.append)
    text = "\n".join(formatEvent(e) + repr(e) for e in events)
    assert "resume" in text  # the log did see the session
    for token in (reg["token"], ack["token"]):
        assert token not in text
