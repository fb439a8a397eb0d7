"""Heartbeats: quiet clients are pinged, silent ones dropped, answering ones kept."""

from .clients import pump

# Ping after 1 s of silence, drop after 2.5 s: a whole cycle fits in a few seconds.
DAEMON_OPTIONS = ["--ping-interval", "1", "--ping-timeout", "2.5", "--register-timeout", "2"]
DROPPED = "ping timeout"


def test_line_clients_that_answer_stay_and_a_silent_one_is_dropped(daemon):
    watcher = daemon.line().login("watch", "#hb")
    script = daemon.line().login("script", "#hb").json_mode()
    mute = daemon.line(auto_pong=False).login("mute", "#hb")

    def quit_seen():
        return any("* mute quit" in line for line in watcher.backlog)

    # watcher and script said nothing but pongs since before mute logged in, so
    # being there after mute's drop means answering pings is what kept them.
    pump(watcher, script,
         until=lambda: quit_seen() and watcher.pings and script.pings,
         what="mute's quit and a ping answered by each of the others", timeout=8)
    watcher.expect(f"* mute quit ({DROPPED})")
    assert script.expect({"type": "quit", "nick": "mute"})["reason"] == DROPPED

    assert mute.expect(lambda line: line.startswith("PING")) == \
        "PING :are you there? (any line answers)"
    assert f"* closing connection: {DROPPED}" in mute.expect_closed()
    assert all(raw.endswith(b"\r\n") for raw in mute.raw_lines)

    watcher.send("/who")
    assert watcher.expect("present") == "* #hb: 2 present: watch, script"
    assert script.request({"type": "ping", "id": 1})["type"] == "ack"


def test_websocket_client_that_answers_stays_and_a_silent_one_is_dropped(daemon):
    keeper = daemon.ws().login("keeper", "#wshb")
    # A real WebSocket client that simply never reads: its pongs never go out.
    sleeper = daemon.ws().login("sleeper", "#wshb")

    pump(keeper,
         until=lambda: keeper.pings and any(
             e.get("type") == "quit" and e.get("nick") == "sleeper" for e in keeper.backlog),
         what="sleeper's quit and a ping answered by keeper", timeout=8)
    assert keeper.expect({"type": "quit", "nick": "sleeper"})["reason"] == DROPPED
    assert {"type": "bye", "reason": DROPPED} in sleeper.expect_closed()
    assert sleeper.close_code == 1000 and sleeper.close_reason == DROPPED
    assert keeper.request({"type": "who"})["nicks"] == ["keeper"]


def test_a_connection_that_never_picks_a_nick_is_dropped_though_it_answers_pings(daemon):
    lurker = daemon.line()  # answers every PING, never says /nick
    lurker.expect("Welcome")
    assert "* closing connection: registration timeout" in lurker.expect_closed()
    assert lurker.pings, "it was pinged and answered before the registration timeout"
