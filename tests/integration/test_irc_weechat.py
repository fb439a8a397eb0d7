"""A second real IRC client from Debian against the real daemon: WeeChat
(weechat-headless) logs in to a chatd account with SASL PLAIN during its CAP
negotiation, joins a room and chats with a telnet user and a WebSocket user.
scripts/test-setup installs weechat-headless and weechat-plugins; without them
this fails rather than skips."""

import pytest

from . import weechat as weechat_client
from .irc_clients import closing_all

DAEMON_OPTIONS = ["--irc", "tcp:0:interface=127.0.0.1"]


@pytest.fixture
def weechat(daemon, tmp_path):
    assert weechat_client.available(), ("weechat-headless and weechat-plugins are needed: "
                                        "bash scripts/test-setup")
    with closing_all(lambda nick, **kw: weechat_client.WeeChat(
            tmp_path / nick, daemon.irc_port, nick, **kw)) as start:
        yield start


def test_weechat_logs_in_with_sasl_and_chats_across_front_ends(daemon, weechat):
    daemon.register_account("wendy", "wendys-secret")

    wee = weechat("wendy", autojoin="#lobby", sasl=("wendy", "wendys-secret"))
    server = wee.wait_log("server.chatd", "SASL authentication successful")
    assert "You are now logged in as wendy" in server  # 900
    assert "sasl" in server.split("capability, enabled:")[1].splitlines()[0]
    wee.wait_log("#lobby", "wendy")
    tom = daemon.line().login("tom", "#lobby")
    wes = daemon.ws().login("wes", "#lobby")
    wee.wait_log("#lobby", "tom")
    wee.wait_log("#lobby", "wes")

    tom.send("hello wendy")
    wee.wait_log("#lobby", "hello wendy")
    wes.request({"type": "message", "text": "hi from the browser"})
    wee.wait_log("#lobby", "hi from the browser")
    wee.type("#lobby", "hello both, from weechat")
    tom.expect("[#lobby] <wendy> hello both, from weechat")
    assert wes.expect({"type": "message", "from": "wendy"})["text"] == "hello both, from weechat"

    # Private messages both ways (WeeChat opens a buffer for the incoming one).
    tom.send("/msg wendy are you there?")
    wee.wait_log("tom", "are you there?")
    wee.type("server.chatd", "/msg tom yes")
    tom.expect("[pm wendy -> tom] yes")
