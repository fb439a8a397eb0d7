"""chatd-cli against the real daemon: what a shell script sees (output, exit codes)."""

import os
import selectors
import signal
import subprocess
import sys
import time

from .conftest import ROOT

TIMEOUT = 10.0


def cli_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for name in ("CHATD_URL", "CHATD_NICK", "CHATD_CA_FILE", "CHATD_PASSWORD", "CHATD_FORMAT"):
        env.pop(name, None)
    env.update(extra)
    return env


def cli_args(*args):
    return [sys.executable, "-m", "chatd.clientcli", "--timeout", "5", *args]


def cli(*args, stdin: str | None = None, **env) -> subprocess.CompletedProcess:
    return subprocess.run(cli_args(*args), input=stdin, capture_output=True, text=True,
                          env=cli_env(**env), timeout=TIMEOUT)


def ws_url(daemon):
    return f"ws://127.0.0.1:{daemon.ws_port}/ws"


def test_send_one_message(daemon):
    watcher = daemon.ws().login("watcher1", "#cli")
    done = cli("-u", ws_url(daemon), "-n", "sender", "send", "#cli", "deploy", "finished")
    assert (done.returncode, done.stderr) == (0, "")
    assert watcher.expect({"type": "message", "from": "sender"})["text"] == "deploy finished"


def test_send_each_stdin_line_over_the_line_port(daemon):
    watcher = daemon.ws().login("watcher2", "#cli-stdin")
    done = cli("-u", f"tcp://127.0.0.1:{daemon.line_port}", "-n", "piper",
               "send", "#cli-stdin", stdin="one\n\ntwo\nthree\n")
    assert done.returncode == 0, done.stderr
    texts = [watcher.expect({"type": "message", "from": "piper"})["text"] for _ in range(3)]
    assert texts == ["one", "two", "three"]


def test_refused_request_exits_1_with_the_servers_reason(daemon):
    done = cli("-u", ws_url(daemon), "msg", "nobody-here", "hello?")
    assert done.returncode == 1
    assert "no_such_nick" in done.stderr


def test_nick_taken_exits_1(daemon):
    daemon.ws().login("holder")
    done = cli("-u", ws_url(daemon), "-n", "holder", "rooms")
    assert done.returncode == 1
    assert "nick_taken" in done.stderr


def test_a_registered_nick_sends_with_its_password(daemon, tmp_path):
    owner = daemon.ws().login("olga")
    assert owner.request({"type": "register", "password": "olga's secret"})["type"] == "ack"
    owner.close()
    watcher = daemon.ws().login("watcher3", "#cli-login")
    url = ws_url(daemon)

    guest = cli("-u", url, "-n", "olga", "send", "#cli-login", "hi")
    assert guest.returncode == 1
    assert "nick_registered" in guest.stderr and "CHATD_PASSWORD" in guest.stderr

    done = cli("-u", url, "-n", "olga", "send", "#cli-login", "hi", CHATD_PASSWORD="olga's secret")
    assert (done.returncode, done.stderr) == (0, "")
    assert watcher.expect({"type": "message", "from": "olga"})["text"] == "hi"

    secret = tmp_path / "olga.pass"
    secret.write_text("olga's secret\n")
    line = f"tcp://127.0.0.1:{daemon.line_port}"
    done = cli("-u", line, "-n", "olga", "--password-file", str(secret), "send", "#cli-login",
               "from a file", CHATD_PASSWORD="not this one")
    assert (done.returncode, done.stderr) == (0, "")
    assert watcher.expect({"type": "message", "from": "olga"})["text"] == "from a file"

    wrong = cli("-u", url, "-n", "olga", "send", "#cli-login", "intruder",
                CHATD_PASSWORD="a wrong password")
    assert wrong.returncode == 1
    assert "login_failed" in wrong.stderr
    assert "a wrong password" not in wrong.stderr
    assert cli("--password-file", str(tmp_path / "missing"), "rooms").returncode == 2


def test_unreachable_server_exits_3(daemon):
    done = cli("-u", "tcp://127.0.0.1:1", "send", "#cli", "anyone?")
    assert done.returncode == 3
    assert "connection failed" in done.stderr


def test_bad_usage_exits_2():
    assert cli("send").returncode == 2
    done = cli("-u", "http://127.0.0.1/", "rooms")
    assert done.returncode == 2 and "scheme" in done.stderr


def test_who_and_rooms(daemon):
    daemon.ws().login("present", "#cli-who")
    who = cli("-u", ws_url(daemon), "who", "#cli-who")
    assert (who.returncode, who.stdout) == (0, "present\n")
    rooms = cli("-u", ws_url(daemon), "rooms")
    assert rooms.returncode == 0 and "#cli-who\t1\n" in rooms.stdout


class Follower:
    """``chatd-cli follow`` running in the background; read its stdout with deadlines."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(cli_args(*args), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=cli_env())
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.buf = b""

    def line(self) -> str:
        deadline = time.monotonic() + TIMEOUT
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no line from follow; got {self.buf!r}"
            if self.sel.select(left):
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                assert chunk, f"follow exited: {self.proc.stderr.read()!r}"
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(TIMEOUT)
        finally:
            self.sel.close()
            self.proc.stdout.close()
            self.proc.stderr.close()


def test_follow_prints_messages_as_they_come(daemon):
    follower = Follower("-u", ws_url(daemon), "-n", "follower", "follow", "#cli-follow")
    try:
        poster = daemon.ws()
        poster.login("poster")
        # The follower is in the room once its join shows; then it must print.
        poster.request({"type": "join", "room": "#cli-follow"})
        deadline = time.monotonic() + TIMEOUT
        # Polled under --rate (5/s): a slow start must not turn the polling into a flood.
        while "follower" not in poster.request({"type": "who", "room": "#cli-follow"}).get(
                "nicks", ()):
            assert time.monotonic() < deadline, "follow never joined"
            time.sleep(0.25)
        poster.request({"type": "message", "room": "#cli-follow", "text": "first"})
        poster.request({"type": "action", "room": "#cli-follow", "text": "waves"})
        lines = []
        while not lines or "waves" not in lines[-1]:
            lines.append(follower.line())
        assert [ln for ln in lines if not ln.startswith("* poster joined")] == [
            "[#cli-follow] <poster> first", "[#cli-follow] * poster waves"]
    finally:
        assert follower.stop() == 0
    checker = daemon.ws().login("checker")
    daemon.wait_for(lambda: "follower" not in checker.request(
        {"type": "who", "room": "#cli-follow"})["nicks"], "the follower to leave")


def test_send_and_who_over_protobuf(daemon):
    watcher = daemon.ws().login("watcher-pb", "#cli-pb")
    done = cli("-u", ws_url(daemon), "-n", "pbsender", "--format", "protobuf",
               "send", "#cli-pb", "binary", "hello")
    assert (done.returncode, done.stderr) == (0, "")
    assert watcher.expect({"type": "message", "from": "pbsender"})["text"] == "binary hello"
    who = cli("-u", ws_url(daemon), "-n", "pbwho", "who", "#cli-pb", CHATD_FORMAT="protobuf")
    assert who.returncode == 0, who.stderr
    assert "watcher-pb" in who.stdout
    wrong = cli("-u", f"tcp://127.0.0.1:{daemon.line_port}", "--format", "protobuf",
                "send", "#cli-pb", "x")
    assert wrong.returncode == 2 and "ws://" in wrong.stderr
