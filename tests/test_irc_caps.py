"""IRCv3 on chatd's IRC front end: CAP, the tags, echo-message, batch and chat
history, SASL PLAIN and PASS against chatd accounts, and encode-once fan-out."""

import base64

import pytest
from irchelp import IrcChat

from chatd.irc.message import parse

PASSWORD = "correct horse battery"


@pytest.fixture
def irc(chat):
    return IrcChat(chat)


def registered_account(chat, nick="alice"):
    """An account made on the line protocol, then its session gone."""
    c = chat.line(nick)
    c.send(f"/register {PASSWORD}")
    assert "error" not in c.raw().decode()
    c.send("/quit")
    return c


def test_cap_ls_302_req_end_hold_registration(irc):
    client = irc.client()
    client.send("CAP LS 302", "NICK alice", "USER alice 0 * :Alice")
    lines = client.lines()
    assert len(lines) == 1 and lines[0].startswith(":chatd CAP * LS :")
    assert set(lines[0].split(" :", 1)[1].split()) >= {
        "server-time", "message-tags", "echo-message", "batch", "account-tag", "away-notify",
        "multi-prefix", "sasl=PLAIN", "draft/chathistory", "chathistory"}
    client.send("CAP REQ :server-time nosuchcap")
    assert client.lines() == [":chatd CAP * NAK :server-time nosuchcap"]
    client.send("CAP REQ :server-time echo-message")
    assert client.lines() == [":chatd CAP * ACK :server-time echo-message"]
    client.send("CAP LIST")
    assert client.lines() == [":chatd CAP * LIST :echo-message server-time"]
    client.send("CAP END")
    assert client.lines()[0].startswith(":chatd 001 alice ")


def test_server_time_message_tags_and_account_tag(chat, irc):
    registered_account(chat)
    alice = irc.client()
    alice.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN",
               "AUTHENTICATE " + base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode(),
               "NICK alice", "USER a 0 * :A", "CAP END", "JOIN #tea")
    bob = irc.client("bob", "#tea", caps=("server-time", "message-tags", "account-tag"))
    alice.send("PRIVMSG #tea :tagged")
    [m] = bob.parsed()
    assert m.tags == {"time": "2023-11-14T22:13:20.000Z", "msgid": m.tags["msgid"],
                      "account": "alice"}
    assert m.tags["msgid"].isdigit()
    assert (m.source, m.params) == ("alice!alice@chatd", ("#tea", "tagged"))


def test_echo_message_returns_own_messages(irc):
    alice = irc.client("alice", "#tea", caps=("echo-message",))
    alice.send("PRIVMSG #tea :hello", "PRIVMSG alice :me")
    assert alice.lines() == [":alice!alice@chatd PRIVMSG #tea :hello",
                             ":alice!alice@chatd PRIVMSG alice :me"]
    bob = irc.client("bob", caps=("echo-message",))
    bob.send("PRIVMSG alice :hi")
    assert bob.lines() == [":bob!bob@chatd PRIVMSG alice :hi"]


def test_scrollback_on_join_is_a_chathistory_batch_with_server_time(chat, irc):
    telnet = chat.line("bob", "#tea")
    telnet.send("first", "second")
    alice = irc.client("alice", caps=("batch", "server-time"))
    alice.send("JOIN #tea")
    lines = alice.lines()
    assert lines[:3] == ["@time=2023-11-14T22:13:20.000Z :alice!alice@chatd JOIN #tea",
                         ":chatd 353 alice = #tea :@bob alice",
                         ":chatd 366 alice #tea :End of /NAMES list."]
    batch = [parse(line) for line in lines[3:]]
    assert batch[0].command == "BATCH" and batch[0].params[1:] == ("chathistory", "#tea")
    ref = batch[0].params[0][1:]
    assert [(m.params, m.tags["batch"], "time" in m.tags) for m in batch[1:3]] == [
        (("#tea", "first"), ref, True), (("#tea", "second"), ref, True)]
    assert (batch[3].command, batch[3].params) == ("BATCH", (f"-{ref}",))


def test_scrollback_on_join_is_plain_lines_without_batch(chat, irc):
    telnet = chat.line("bob", "#tea")
    telnet.send("first")
    alice = irc.client("alice")
    alice.send("JOIN #tea")
    assert alice.lines()[3:] == [":bob!bob@chatd PRIVMSG #tea :first"]


def test_chathistory_command(chat, irc):
    telnet = chat.line("bob", "#tea")
    telnet.send("one", "two", "three")
    alice = irc.client("alice", "#tea", caps=("batch", "message-tags", "draft/chathistory"))
    alice.send("CHATHISTORY LATEST #tea * 2")
    msgs = alice.parsed()
    assert [m.params[-1] for m in msgs[1:-1]] == ["two", "three"]
    two = msgs[1].tags["msgid"]
    alice.send(f"CHATHISTORY BEFORE #tea msgid={two} 10")
    assert [m.params[-1] for m in alice.parsed()[1:-1]] == ["one"]
    alice.send(f"CHATHISTORY AFTER #tea msgid={two} 10")
    assert [m.params[-1] for m in alice.parsed()[1:-1]] == ["three"]
    alice.send("CHATHISTORY BEFORE #tea timestamp=2020-01-01T00:00:00Z 10",
               "CHATHISTORY AROUND #tea msgid=1 10", "CHATHISTORY LATEST #tea")
    assert [m.params[:2] for m in alice.parsed()] == [
        ("CHATHISTORY", "INVALID_PARAMS"), ("CHATHISTORY", "INVALID_PARAMS"),
        ("CHATHISTORY", "NEED_MORE_PARAMS")]
    alice.send("CHATHISTORY LATEST #other * 5")
    assert [m.params[:2] for m in alice.parsed()] == [("CHATHISTORY", "MESSAGE_ERROR")]


def test_chathistory_needs_the_capability(irc):
    alice = irc.client("alice", "#tea")
    alice.send("CHATHISTORY LATEST #tea * 5")
    assert alice.lines() == [":chatd 421 alice CHATHISTORY :Unknown command"]


def test_sasl_plain_logs_in_to_a_chatd_account(chat, irc):
    registered_account(chat)
    client = irc.client()
    client.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN")
    assert client.lines()[-1] == "AUTHENTICATE +"
    client.send("AUTHENTICATE " + base64.b64encode(b"\0alice\0wrong").decode())
    assert client.lines() == [":chatd 904 * :SASL authentication failed"]
    client.send("AUTHENTICATE PLAIN",
                "AUTHENTICATE " + base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode())
    chat.clock.advance(5)  # a login after a failed one waits a little (chatd.accounts)
    assert client.lines()[1:] == [
        ":chatd 900 alice alice!alice@chatd alice :You are now logged in as alice",
        ":chatd 903 alice :SASL authentication successful"]
    client.send("NICK alice", "USER a 0 * :A", "CAP END")
    assert client.lines()[0].startswith(":chatd 001 alice ")
    assert client.session.account == "alice"
    client.send("AUTHENTICATE PLAIN")
    assert client.lines() == [":chatd 907 alice :You have already authenticated"]


def test_sasl_abort_and_unknown_mechanism(irc):
    client = irc.client()
    client.send("AUTHENTICATE PLAIN")
    assert client.lines() == [":chatd 904 * :Request the sasl capability first"]
    client.send("CAP REQ :sasl", "AUTHENTICATE EXTERNAL")
    assert client.lines()[1:] == [":chatd 908 * PLAIN :are available SASL mechanisms",
                                  ":chatd 904 * :SASL authentication failed"]
    client.send("AUTHENTICATE PLAIN", "AUTHENTICATE *")
    assert client.lines()[1:] == [":chatd 906 * :SASL authentication aborted"]


def test_pass_logs_in_and_a_registered_nick_without_login_is_refused(chat, irc):
    registered_account(chat)
    client = irc.client()
    client.send(f"PASS :{PASSWORD}", "NICK alice", "USER a 0 * :A")
    lines = client.lines()
    assert lines[0] == ":chatd 900 alice alice!alice@chatd alice :You are now logged in as alice"
    assert lines[1].startswith(":chatd 001 alice ")
    client.send("QUIT")
    other = irc.client()
    other.send("PASS wrong", "NICK alice", "USER a 0 * :A")
    assert other.lines() == [":chatd 464 * :Password incorrect",
                             ":chatd 433 * alice :alice is registered; /login alice PASSWORD "
                             "to use it"]
    other.send("NICK alice2")
    assert other.lines()[0].startswith(":chatd 001 alice2 ")


def test_a_broadcast_is_rendered_once_per_variant_not_per_member(chat, irc, monkeypatch):
    from chatd.irc import render
    calls = []
    real = render.RENDERERS[render.ev.Message]
    monkeypatch.setitem(render.RENDERERS, render.ev.Message,
                        lambda f, e: calls.append(f.caps) or real(f, e))
    for i in range(5):
        irc.client(f"plain{i}", "#tea")
    for i in range(5):
        irc.client(f"timed{i}", "#tea", caps=("server-time",))
    telnet = chat.line("bob", "#tea")
    telnet.send("to everyone")
    assert sorted(map(sorted, calls)) == [[], ["server-time"]]


def test_unknown_event_types_become_a_notice(chat, irc):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Coalesced:
        type = "joins"
        room: str
        text: str

    alice = irc.client("alice", "#tea")
    chat.service.bus.publish_room("#tea", Coalesced("#tea", "bob and 41 others joined"))
    [line] = alice.lines()
    assert line.startswith(":chatd NOTICE #tea :")
    chat.service.bus.publish_user("alice", Coalesced(None, "x"))
    [line] = alice.lines()
    assert line.startswith(":chatd NOTICE alice :")


def test_irc_deliveries_and_messages_count_as_the_irc_front_end():
    from conftest import Chat

    from chatd.dispatch import Dispatcher
    from chatd.limits import Limits
    from chatd.metrics import Metrics
    from chatd.service import ChatService
    from tests.fakes import InlinePasswords

    chat = Chat()
    metrics = Metrics(chat.clock, process=False)
    chat.service = ChatService(Limits(), clock=chat.clock, passwords=InlinePasswords(),
                               metrics=metrics)
    chat.dispatcher = Dispatcher(chat.service)
    irc = IrcChat(chat)
    alice = irc.client("alice", "#tea")
    irc.client("bob", "#tea", caps=("server-time",))
    telnet = chat.line("carol", "#tea")

    def value(name, frontend):
        return metrics.registry.get_sample_value(name, {"frontend": frontend}) or 0.0
    before_irc = value("chatd_messages_delivered_total", "irc")
    before_line = value("chatd_messages_delivered_total", "line")
    alice.send("PRIVMSG #tea :hi")
    assert value("chatd_messages_received_total", "irc") == 1
    # alice's message: to bob (irc) and carol (line); alice, without echo-message,
    # is left out of the broadcast, so it counts one IRC delivery.
    delivered_irc = value("chatd_messages_delivered_total", "irc")
    assert delivered_irc == before_irc + 1
    assert value("chatd_messages_delivered_total", "line") == before_line + 1
    telnet.send("hello")
    assert value("chatd_messages_delivered_total", "irc") == delivered_irc + 2


def test_sasl_too_long_905_and_bad_cap_subcommand_410(irc):
    client = irc.client()
    client.send("CAP REQ :sasl", "CAP FROB")
    assert client.lines()[1:] == [":chatd 410 * FROB :Invalid CAP command"]
    client.send("AUTHENTICATE PLAIN")
    client.raw()
    for _ in range(5):
        client.send("AUTHENTICATE " + "A" * 400)
    assert client.lines() == [":chatd 905 * :SASL message too long"]


def test_whois_says_who_is_logged_in_330(chat, irc):
    registered_account(chat)
    alice = irc.client()
    alice.send(f"PASS :{PASSWORD}", "NICK alice", "USER a 0 * :A")
    bob = irc.client("bob")
    bob.send("WHOIS alice")
    assert ":chatd 330 bob alice alice :is logged in as" in bob.lines()


def test_output_held_before_the_welcome_is_capped_like_the_send_queue(make_chat):
    chat = make_chat(send_queue=2048)
    registered_account(chat)
    irc = IrcChat(chat)
    lurker = irc.client()
    lurker.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN",
                "AUTHENTICATE " + base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode())
    assert lurker.session.nick == "alice"  # logged in, but never ends registration
    bob = chat.line("bob")
    for i in range(30):
        bob.send(f"/msg alice {'x' * 100} {i}")
        chat.clock.advance(1)
    assert lurker.session is None or not lurker.session.attached


def test_cap_replies_always_use_a_trailing_parameter(irc):
    client = irc.client()
    client.send("CAP REQ server-time", "CAP LIST")
    assert client.lines() == [":chatd CAP * ACK :server-time", ":chatd CAP * LIST :server-time"]
