"""IRC through the real daemon (``--irc``): raw-socket IRC clients and IRC over
WebSocket (``/irc``) with a telnet user and a WebSocket user in one room;
private messages both ways, CAP, SASL PLAIN, PASS, chathistory, nick changes
seen across front ends, QUIT."""

import re

import pytest
import websocket

# Room for bursts; nick changes are rate limited from the first nick on.
DAEMON_OPTIONS = ["--irc", "tcp:0:interface=127.0.0.1", "--rate", "200", "--burst", "200",
                  "--nick-interval", "0.2", "--history", "20"]
TIME_TAG = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_irc_telnet_and_websocket_users_share_a_room(daemon):
    ian = daemon.irc()
    welcome = ian.register("ian")
    assert welcome.source == "chatd"  # --name, the default
    ian.join("#mix")
    tom = daemon.line().login("tom", "#mix")
    wes = daemon.ws().login("wes", "#mix")
    assert ian.expect("JOIN").nick == "tom"
    assert ian.expect("JOIN").nick == "wes"

    ian.privmsg("#mix", "hello from irc")
    tom.expect("[#mix] <ian> hello from irc")
    assert wes.expect({"type": "message", "from": "ian"})["text"] == "hello from irc"
    tom.send("hello from telnet")
    wes.request({"type": "message", "text": "hello from the browser"})
    for nick, text in (("tom", "hello from telnet"), ("wes", "hello from the browser")):
        msg = ian.expect("PRIVMSG")
        assert (msg.nick, msg.params) == (nick, ("#mix", text))
    ian.absent(lambda m: m.command == "PRIVMSG" and m.nick == "ian")  # no echo-message

    ian.send("NAMES #mix")
    names = ian.expect("353")
    assert set(names.text.replace("@", "").split()) == {"ian", "tom", "wes"}
    ian.expect("366")


def test_private_messages_cross_front_ends_both_ways(daemon):
    ivy = daemon.irc()
    ivy.register("ivy")
    tim = daemon.line().login("tim")
    web = daemon.ws().login("web")
    ivy.privmsg("tim", "psst tim")
    tim.expect("[pm ivy -> tim] psst tim")
    ivy.privmsg("web", "psst web")
    assert web.expect({"type": "private"})["text"] == "psst web"
    tim.send("/msg ivy hi ivy")
    msg = ivy.expect("PRIVMSG")
    assert (msg.nick, msg.params) == ("tim", ("ivy", "hi ivy"))
    web.request({"type": "private", "to": "ivy", "text": "from the web"})
    msg = ivy.expect("PRIVMSG")
    assert (msg.nick, msg.params) == ("web", ("ivy", "from the web"))
    ivy.privmsg("nobody-here", "hello?")
    assert ivy.expect("401").params[1] == "nobody-here"


def test_nick_changes_are_seen_across_front_ends(daemon):
    ike = daemon.irc()
    ike.register("ike")
    ike.join("#nicks")
    tam = daemon.line().login("tam", "#nicks")
    wyn = daemon.ws().login("wyn", "#nicks")
    ike.expect("JOIN")
    ike.expect("JOIN")
    tam.expect("* wyn joined")

    daemon.wait_for(lambda: _renamed(ike, "ike", "isaac"), "the IRC nick change")
    tam.expect("* ike is now known as isaac")
    assert wyn.expect({"type": "nick", "old": "ike"})["new"] == "isaac"

    daemon.wait_for(lambda: _line_renamed(tam, "tamsin"), "the telnet nick change")
    nick = ike.expect("NICK")
    assert (nick.nick, nick.params) == ("tam", ("tamsin",))
    daemon.wait_for(lambda: wyn.request({"type": "nick", "nick": "wynne"})["type"] == "ack",
                    "the WebSocket nick change")
    nick = ike.expect("NICK")
    assert (nick.nick, nick.params) == ("wyn", ("wynne",))


def _renamed(client, old: str, new: str) -> bool:
    """One try (nick changes are rate limited): the NICK, or a refusal numeric."""
    client.send(f"NICK {new}")
    answer = client.expect(lambda m: m.command == "NICK" or m.command[:1] == "4" or (
        m.command == "NOTICE" and "nick_too_fast" in m.text))
    return answer.command == "NICK" and answer.params == (new,)


def _line_renamed(client, new: str) -> bool:
    client.send(f"/nick {new}")
    return f"you are now {new}" in client.expect(
        lambda line: f"you are now {new}" in line or line.startswith("!"))


def test_cap_negotiation_server_time_echo_and_tags(daemon):
    ida = daemon.irc()
    ida.send("CAP LS 302")
    ls = ida.expect(lambda m: m.command == "CAP" and m.params[1] == "LS")
    offered = dict(c.partition("=")[::2] for c in ls.text.split())
    for cap in ("server-time", "message-tags", "echo-message", "batch", "account-tag",
                "away-notify", "multi-prefix", "sasl"):
        assert cap in offered, ls.raw
    assert "PLAIN" in offered["sasl"].split(",")
    assert "chathistory" in offered or "draft/chathistory" in offered
    ida.send("CAP REQ :nonsense-cap")
    assert ida.expect(lambda m: m.command == "CAP").params[1] == "NAK"
    ida.send("NICK ida")
    ida.send("USER ida 0 * :Ida")
    ida.absent("001", within=0.3)  # registration waits for CAP END
    ida.send("CAP REQ :server-time echo-message message-tags")
    ack = ida.expect(lambda m: m.command == "CAP")
    assert ack.params[1] == "ACK"
    ida.send("CAP END")
    ida.nick = ida.expect("001").params[0]
    ida.join("#caps")
    tod = daemon.line().login("tod", "#caps")
    ida.expect("JOIN")
    tod.send("tagged")
    msg = ida.expect("PRIVMSG")
    assert TIME_TAG.match(msg.tags["time"]), msg.raw
    assert msg.tags.get("msgid")
    ida.privmsg("#caps", "echoed back")
    echo = ida.expect("PRIVMSG")
    assert (echo.nick, echo.text) == ("ida", "echoed back")
    tod.expect("[#caps] <ida> echoed back")


def test_sasl_plain_and_pass_log_in_to_chatd_accounts(daemon):
    daemon.register_account("saskia", "s3cret-pass")

    # Without logging in, the registered nick is not ours (as on the other front ends).
    anon = daemon.irc()
    anon.send("NICK saskia")
    anon.send("USER x 0 * :x")
    refused = anon.expect(lambda m: m.command == "001" or m.command[:1] == "4")
    assert refused.command != "001" or refused.params[0] != "saskia", refused.raw
    anon.close()

    sasl = daemon.irc()
    sasl.register("saskia", caps=("account-tag",), sasl=("saskia", "s3cret-pass"))
    assert sasl.nick == "saskia"
    logged_in = [m for m in sasl.seen if m.command == "900"]
    assert logged_in and "saskia" in logged_in[0].params, sasl.seen
    sasl.quit()

    bad = daemon.irc()
    bad.send("CAP LS 302")
    bad.send("NICK saskia")
    bad.send("USER x 0 * :x")
    bad.expect(lambda m: m.command == "CAP")
    bad.send("CAP REQ :sasl")
    bad.expect(lambda m: m.command == "CAP" and m.params[1] == "ACK")
    bad.send("AUTHENTICATE PLAIN")
    bad.expect("AUTHENTICATE")
    from .irc_clients import sasl_plain
    bad.send(f"AUTHENTICATE {sasl_plain('saskia', 'wrong')}")
    bad.expect("904")
    bad.close()

    with_pass = daemon.irc()
    with_pass.register("saskia", password="s3cret-pass")
    assert with_pass.nick == "saskia"
    with_pass.quit()


def test_chathistory_batch_with_server_time_or_plain_lines(daemon):
    tex = daemon.line().login("tex", "#hist")
    for i in range(3):
        tex.send(f"old message {i}")
        tex.expect(f"<tex> old message {i}")

    modern = daemon.irc()
    modern.register("modern", caps=("batch", "server-time", "draft/chathistory"))
    modern.send("JOIN #hist")
    start = modern.expect("BATCH")
    assert start.params[0].startswith("+") and "chathistory" in start.params[1]
    ref = start.params[0][1:]
    replayed = [modern.expect("PRIVMSG") for _ in range(3)]
    assert [m.text for m in replayed] == [f"old message {i}" for i in range(3)]
    for m in replayed:
        assert m.tags.get("batch") == ref and TIME_TAG.match(m.tags["time"]), m.raw
        assert m.nick == "tex"
    assert modern.expect("BATCH").params[0] == f"-{ref}"

    plain = daemon.irc()
    plain.register("plain")
    plain.send("JOIN #hist")
    replayed = [plain.expect("PRIVMSG") for _ in range(3)]
    assert [m.text for m in replayed] == [f"old message {i}" for i in range(3)]
    assert all(not m.tags for m in replayed)
    plain.sync()
    assert not [m for m in plain.seen if m.command == "BATCH"]


def test_chathistory_command_pages_back_by_msgid(daemon):
    tia = daemon.line().login("tia", "#pages")
    for i in range(6):
        tia.send(f"page line {i}")
        tia.expect(f"<tia> page line {i}")
    hal = daemon.irc()
    hal.register("hal", caps=("batch", "server-time", "message-tags", "draft/chathistory"))
    hal.join("#pages")  # the JOIN's scrollback batch
    hal.sync()
    hal.drain()

    hal.send("CHATHISTORY LATEST #pages * 2")
    latest = _history_batch(hal)
    assert [m.text for m in latest] == ["page line 4", "page line 5"]
    oldest = latest[0].tags["msgid"]
    hal.send(f"CHATHISTORY BEFORE #pages msgid={oldest} 3")
    earlier = _history_batch(hal)
    assert [m.text for m in earlier] == ["page line 1", "page line 2", "page line 3"]
    assert all(TIME_TAG.match(m.tags["time"]) for m in earlier + latest)


def _history_batch(client) -> list:
    """The PRIVMSGs of the next chathistory batch, in order."""
    start = client.expect(lambda m: m.command == "BATCH" and m.params[0].startswith("+"))
    ref = start.params[0][1:]
    assert start.params[1].endswith("chathistory"), start.raw
    lines = []
    while True:
        m = client.expect(lambda m: m.tags.get("batch") == ref or m.command == "BATCH")
        if m.command == "BATCH":
            assert m.params[0] == f"-{ref}", m.raw
            return lines
        lines.append(m)


def test_quit_sends_error_before_closing_and_others_see_it(daemon):
    qui = daemon.irc()
    qui.register("qui")
    qui.join("#bye")
    tep = daemon.line().login("tep", "#bye")
    rest = qui.quit("gone fishing")
    assert rest and rest[-1].command == "ERROR", rest
    tep.expect("* qui quit (gone fishing)")


def test_a_long_message_reaches_irc_split_on_character_boundaries(daemon):
    ilo = daemon.irc()
    ilo.register("ilo")
    ilo.join("#long")
    wen = daemon.ws().login("wen", "#long")
    ilo.expect("JOIN")
    text = "é" * 700 + " end"  # 1404 bytes: more than one IRC line
    wen.request({"type": "message", "text": text})
    got = ""
    while got != text:
        msg = ilo.expect("PRIVMSG")
        assert len(msg.raw.encode("utf-8")) + 2 <= 512
        got += msg.text
        assert text.startswith(got), "pieces out of order or cut"


# -- IRC over WebSocket, with a real WebSocket client -----------------------------------
def test_irc_over_websocket_refuses_a_client_with_only_other_subprotocols(daemon):
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        daemon.ircws(subprotocols=("chat.example",))
    assert e.value.status_code == 400
    # No subprotocol at all: text frames.
    plain = daemon.ircws(subprotocols=())
    assert plain.subprotocol is None
    plain.register("nosub")
    assert {op for op, _ in plain.frames} == {0x1}


@pytest.mark.parametrize("subprotocol", ["text.ircv3.net", "binary.ircv3.net"])
def test_irc_over_websocket_chats_with_telnet_and_tcp_irc(daemon, subprotocol):
    tag = subprotocol[0]
    web = daemon.ircws(subprotocols=(subprotocol,))
    assert web.subprotocol == subprotocol
    web.register(f"webirc{tag}")
    web.join(f"#ws{tag}")
    tcp = daemon.irc()
    tcp.register(f"tcpirc{tag}")
    tcp.join(f"#ws{tag}")
    tel = daemon.line().login(f"tel{tag}", f"#ws{tag}")
    web.expect("JOIN")
    web.expect("JOIN")
    web.privmsg(f"#ws{tag}", "over websocket")
    tel.expect(f"<webirc{tag}> over websocket")
    assert tcp.expect("PRIVMSG").text == "over websocket"
    tel.send("from telnet")
    assert web.expect("PRIVMSG").text == "from telnet"
    tcp.privmsg(f"webirc{tag}", "private over tcp")
    msg = web.expect("PRIVMSG")
    assert (msg.nick, msg.params) == (f"tcpirc{tag}", (f"webirc{tag}", "private over tcp"))
    opcode = 0x1 if subprotocol == "text.ircv3.net" else 0x2
    assert {op for op, _ in web.frames} == {opcode}
    web.send("QUIT :done")
    web.expect("ERROR")


def test_irc_over_websocket_logs_in_with_sasl(daemon):
    daemon.register_account("webowner", "webowner-pass")
    web = daemon.ircws()
    web.register("webowner", caps=("account-tag",), sasl=("webowner", "webowner-pass"))
    assert web.nick == "webowner"
    assert any(m.command == "900" for m in web.seen)


def test_irc_connections_count_against_the_same_per_address_limit(start_daemon):
    d = start_daemon("--irc", "tcp:0:interface=127.0.0.1", "--max-per-ip", "3")
    d.line().login("tel")
    tcp = d.irc()
    tcp.register("tcpirc")
    web = d.ircws()
    web.register("webirc")
    # A fourth from the same address, on either IRC front end, is refused.
    extra = d.irc()
    refused = extra.expect_closed()
    assert [m.command for m in refused] == ["ERROR"]
    assert "too many connections from your address" in refused[0].text
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        d.ircws()
    assert e.value.status_code == 503
    # One leaves: IRC over WebSocket gets the place (once the server has let go of it).
    tcp.quit()
    again = d.wait_for(lambda: _connected_ws(d), "a free place for IRC over WebSocket")
    again.register("webirc2")


def _connected_ws(daemon):
    try:
        return daemon.ircws()
    except websocket.WebSocketBadStatusException:
        return None
