"""The service's heartbeats on the IRC front ends, through the real daemon: a
quiet IRC client is pinged with ``PING``; one that answers stays, one that does
not is closed with ``ERROR`` (and the room sees it quit); a web IRC client is
pinged with WebSocket pings, which its library answers."""

from .clients import pump

DAEMON_OPTIONS = ["--irc", "tcp:0:interface=127.0.0.1", "--ping-interval", "1",
                  "--ping-timeout", "2.5", "--register-timeout", "2"]


def test_irc_clients_are_pinged_and_the_silent_one_is_closed(daemon):
    alive = daemon.irc()
    silent = daemon.irc(auto_pong=False)
    web = daemon.ircws()
    alive.register("alive")
    silent.register("silent")
    web.register("webalive")
    alive.join("#beat")
    silent.join("#beat")
    web.join("#beat")
    # Everyone keeps reading (so the others answer their pings) until the silent
    # one is told why it goes.
    pump(alive, web, silent, until=lambda: any(m.command == "ERROR" for m in silent.backlog),
         what="the silent client's ERROR", timeout=8)
    got = [m.command for m in silent.drain()]
    assert "PING" in got and got.index("PING") < got.index("ERROR"), got
    assert "ping timeout" in silent.seen[-1].text
    silent.expect_closed()
    gone = alive.expect(lambda m: m.command == "QUIT" and m.nick == "silent", timeout=5)
    assert "ping timeout" in gone.text
    # The ones that answered stay.
    alive.sync()
    web.sync()
    assert alive.pings >= 1 and web.pings >= 1


def test_a_connection_that_never_registers_is_closed(daemon):
    idle = daemon.irc()
    error = idle.expect("ERROR", timeout=5)
    assert "nick" in error.text.lower() or "regist" in error.text.lower(), error.raw
    idle.expect_closed()
