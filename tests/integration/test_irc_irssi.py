"""A real IRC client from Debian against the real daemon: irssi (in tmux) joins a
room and chats with a telnet user and a WebSocket user, both ways, private
messages included.  scripts/test-setup installs irssi and tmux; without them
this fails rather than skips."""

import pytest

from . import irssi as irssi_client
from .irc_clients import closing_all

DAEMON_OPTIONS = ["--irc", "tcp:0:interface=127.0.0.1", "--name", "irc.chatd.test",
                  "--nick-interval", "0.2"]


@pytest.fixture
def irssi(daemon, tmp_path):
    assert irssi_client.available(), "irssi and tmux are needed: bash scripts/test-setup"
    with closing_all(lambda nick: irssi_client.Irssi(tmp_path / nick, daemon.irc_port,
                                                     nick)) as start:
        yield start


def test_irssi_chats_with_telnet_and_websocket_users(daemon, irssi):
    iris = irssi("iris")
    # Registered: the welcome names the server by --name, and the 005 tokens were taken.
    iris.wait_text("Welcome to the irc.chatd.test IRC network")
    iris.type("/join #lobby")
    iris.wait_text("has joined #lobby")
    tom = daemon.line().login("tom", "#lobby")
    wes = daemon.ws().login("wes", "#lobby")
    iris.wait_text("tom [tom@chatd] has joined #lobby")
    iris.wait_text("wes [wes@chatd] has joined #lobby")

    tom.send("hello iris, from telnet")
    iris.wait_text("tom> hello iris, from telnet")
    wes.request({"type": "message", "text": "and from the browser"})
    iris.wait_text("wes> and from the browser")

    iris.type("hi both, from irssi")
    tom.expect("[#lobby] <iris> hi both, from irssi")
    assert wes.expect({"type": "message", "from": "iris"})["text"] == "hi both, from irssi"

    iris.type("/me waves")
    tom.expect("[#lobby] * iris waves")

    # Private messages both ways; irssi opens a query window for the incoming one.
    iris.type("/msg tom just for you")
    tom.expect("[pm iris -> tom] just for you")
    tom.send("/msg iris got it")
    iris.type("/query tom")  # the query window irssi opened
    iris.wait_text("tom> got it")

    # A nick change in irssi is seen on telnet and WebSocket, and one there in irssi.
    iris.type("/window goto #lobby")
    iris.type("/nick irene")
    tom.expect("* iris is now known as irene")
    assert wes.expect({"type": "nick", "old": "iris"})["new"] == "irene"
    daemon.wait_for(lambda: _line_renamed(tom, "thomas"), "tom's nick change")
    iris.wait_text("tom is now known as thomas")

    iris.type("/quit see you")
    tom.expect("* irene quit (see you)")


def _line_renamed(client, new: str) -> bool:
    """One try (nick changes are rate limited): renamed, or refused."""
    client.send(f"/nick {new}")
    return f"you are now {new}" in client.expect(
        lambda line: f"you are now {new}" in line or line.startswith("!"))
