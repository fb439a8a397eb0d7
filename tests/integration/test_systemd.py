"""systemd integration without a running systemd.

* Readiness: the test is systemd's end of ``NOTIFY_SOCKET`` (a unix datagram
  socket), and the real daemon tells it READY=1 only once its ports accept
  connections, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 on SIGTERM.
* Socket activation: the daemon adopts listening sockets it inherits
  (``systemd:`` endpoints, LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES), once under
  ``systemd-socket-activate`` and once under a harness that, like systemd,
  keeps the sockets across a restart: a connection made while no daemon runs
  is accepted by the kernel and served by the next daemon.
"""

import shutil
import signal
import socket
import sys
import threading
import time
import uuid

import pytest
from twisted.application import service
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from chatd import sdnotify
from chatd.tap import AfterStore

from .clients import LineClient

RECV_TIMEOUT = 15.0


class NotifySocket:
    """systemd's end of NOTIFY_SOCKET, in the abstract namespace (``@name``)."""

    def __init__(self):
        self.name = f"@chatd-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.seen = []  # every message, watchdog pings included

    def messages(self, timeout: float = RECV_TIMEOUT):
        """Yield the next messages, each a set of KEY=VALUE lines; watchdog pings skipped."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no notification within {timeout}s; seen {self.seen}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            lines = set(data.decode().split("\n"))
            self.seen.append(lines)
            if lines != {"WATCHDOG=1"}:
                yield lines

    def next(self, timeout: float = RECV_TIMEOUT) -> set:
        return next(self.messages(timeout))

    def close(self):
        self.sock.close()


@pytest.fixture
def notify_socket():
    s = NotifySocket()
    yield s
    s.close()


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


# -- chatd.sdnotify on its own ------------------------------------------------------
def test_nothing_is_sent_without_notify_socket():
    assert sdnotify.notify("READY=1", environ={}) is False


def test_a_path_socket_gets_the_states_as_lines(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        assert sdnotify.notify("READY=1", "STATUS=x", environ={"NOTIFY_SOCKET": path})
        assert sock.recv(100) == b"READY=1\nSTATUS=x"


def test_a_socket_nobody_listens_on_is_logged_not_raised(tmp_path):
    assert sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) \
        is False


def test_reloading_says_ready_after_the_reload_even_a_failed_one(notify_socket):
    env = {"NOTIFY_SOCKET": notify_socket.name}
    done = defer.Deferred()
    sdnotify.reloading(lambda: done, environ=env)
    first = notify_socket.next()
    assert "RELOADING=1" in first
    assert any(line.startswith("MONOTONIC_USEC=") for line in first)
    done.callback(None)
    assert "READY=1" in notify_socket.next()

    def broken():
        raise ValueError("bad config")
    sdnotify.reloading(broken, environ=env)
    assert "RELOADING=1" in notify_socket.next()
    assert "READY=1" in notify_socket.next()


def test_watchdog_pings_at_half_the_interval_and_stop_says_stopping(notify_socket):
    env = {"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "4000000"}
    clock = Clock()
    notifier = sdnotify.SystemdNotifier(clock, environ=env)
    notifier.startService()
    clock.advance(2.0)
    notifier.stopService()
    clock.advance(10.0)  # no pings once stopped
    assert notify_socket.next() == {"STOPPING=1", "STATUS=stopping"}
    assert notify_socket.seen[:2] == [{"WATCHDOG=1"}, {"WATCHDOG=1"}]
    assert len(notify_socket.seen) == 3


def test_watchdog_for_another_process_is_ignored():
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}) \
        is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "1000000"}) == 0.5
    assert sdnotify.watchdog_interval({}) is None


# -- the daemon as a Type=notify service ------------------------------------------
def test_daemon_notifies_ready_reloading_and_stopping(start_daemon, notify_socket):
    d = start_daemon(start=False, env={"NOTIFY_SOCKET": notify_socket.name,
                                       "WATCHDOG_USEC": "400000"})
    d.line_port, d.ws_port = free_port(), free_port()
    at_ready = {}

    def systemd():
        # What systemd does on READY=1: count the service as started.  Both
        # ports must accept connections at that very moment.
        at_ready["message"] = notify_socket.next()
        at_ready["line"] = accepts(d.line_port)
        at_ready["ws"] = accepts(d.ws_port)
    waiter = threading.Thread(target=systemd)
    waiter.start()
    d.start()
    waiter.join(RECV_TIMEOUT)
    assert "READY=1" in at_ready["message"], notify_socket.seen
    assert at_ready["line"] and at_ready["ws"]
    # Nothing before READY=1 but (maybe) watchdog pings.
    assert all(m == {"WATCHDOG=1"} for m in notify_socket.seen[:-1])

    c = d.line().login("hup", "#sd")
    d.proc.send_signal(signal.SIGHUP)
    assert "RELOADING=1" in notify_socket.next()
    assert "READY=1" in notify_socket.next()
    c.send("/msg hup still here")
    c.expect("still here")

    # The event loop pings the watchdog (WatchdogSec=0.4 s: every 0.2 s).
    pings = len([m for m in notify_socket.seen if m == {"WATCHDOG=1"}])
    time.sleep(0.5)
    d.terminate()
    assert "STOPPING=1" in notify_socket.next()
    assert d.stop() == 0 and d.exited_cleanly(), d.output()
    assert len([m for m in notify_socket.seen if m == {"WATCHDOG=1"}]) >= pings + 1


# -- socket activation ------------------------------------------------------------
ACTIVATED = ["--line", "systemd:domain=INET:index=0", "--ws", "systemd:domain=INET:index=1"]


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="needs systemd-socket-activate (Debian package systemd)")
def test_daemon_serves_sockets_from_systemd_socket_activate(start_daemon):
    line_port, ws_port = free_port(), free_port()
    d = start_daemon(start=False, listen=ACTIVATED, wrap=[
        "systemd-socket-activate", "-l", f"127.0.0.1:{line_port}", "-l",
        f"127.0.0.1:{ws_port}", "--fdname=line:ws"])
    d.line_port, d.ws_port = line_port, ws_port
    first = {}

    def connect_first():
        # systemd-socket-activate execs the daemon on the first connection:
        # this one is made before any daemon runs and must still be served.
        deadline = time.monotonic() + RECV_TIMEOUT
        while "client" not in first and time.monotonic() < deadline:
            try:
                first["client"] = LineClient(line_port)
            except ConnectionRefusedError:  # not listening yet
                time.sleep(0.02)
    connector = threading.Thread(target=connect_first)
    connector.start()
    d.start()
    connector.join(RECV_TIMEOUT)
    early = first["client"]
    d.clients.append(early)
    early.login("early", "#act")
    web = d.ws().login("web", "#act")
    web.send_json({"type": "message", "room": "#act", "text": "over an adopted socket"})
    early.expect("over an adopted socket")
    # Every connection is counted by admission, whatever the listener.
    d.wait_connections(2)
    assert f"LineFactory starting on {line_port}" in d.log()


LAUNCHER = """\
import fcntl, os, sys
# What systemd does before exec: the listening sockets become fds 3, 4, ...
# and LISTEN_PID names the process that is to use them (this one, after exec).
fds, argv = [int(a) for a in sys.argv[1].split(",")], sys.argv[2:]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ.update(LISTEN_FDS=str(len(fds)), LISTEN_PID=str(os.getpid()))
os.execv(argv[0], argv)
"""


def test_a_restart_under_socket_activation_loses_no_connection(start_daemon):
    # This test holds the listening sockets, as systemd does (and as
    # systemd-socket-activate cannot: it execs the daemon and is gone).
    line_sock = socket.create_server(("127.0.0.1", 0), backlog=64)
    ws_sock = socket.create_server(("127.0.0.1", 0), backlog=64)
    try:
        fds = (line_sock.fileno(), ws_sock.fileno())
        d = start_daemon(
            start=False, pass_fds=fds, env={"LISTEN_FDNAMES": "line:ws"},
            listen=["--line", "systemd:domain=INET:name=line",
                    "--ws", "systemd:domain=INET:name=ws"],
            wrap=[sys.executable, "-c", LAUNCHER, ",".join(map(str, fds))])
        d.line_port, d.ws_port = line_sock.getsockname()[1], ws_sock.getsockname()[1]
        d.start()
        d.line().login("before", "#r")
        d.ws().login("webbefore", "#r")
        d.wait_connections(2)
        assert d.stop() == 0 and d.exited_cleanly(), d.output()
        d.close_clients()

        # No daemon runs, yet the kernel accepts: the socket is still listening.
        waiting = LineClient(d.line_port)
        d.clients.append(waiting)
        waiting.send("/nick patient")  # waits in the kernel's buffer too
        d.start()
        waiting.expect("Welcome")
        waiting.expect("you are now patient")
        waiting.send("/join #r")
        waiting.expect("now talking in #r")
        web = d.ws().login("webafter", "#r")
        web.send_json({"type": "message", "room": "#r", "text": "after the restart"})
        waiting.expect("after the restart")
        d.wait_connections(2)
    finally:
        line_sock.close()
        ws_sock.close()


# -- where READY=1 comes from -------------------------------------------------------
class FakeChat:
    def __init__(self):
        self.loaded = defer.Deferred()

    def load(self):
        return self.loaded


class Listener(service.Service):
    def __init__(self, events, fail=False):
        self.events, self.fail = events, fail

    def startService(self):
        if self.fail:
            raise OSError("Address already in use")
        super().startService()
        self.events.append("listening")


def test_ready_comes_after_the_store_and_every_listener():
    events = []
    chat = FakeChat()
    gate = AfterStore(chat, MemoryReactorClock(), ready=lambda: events.append("ready"))
    Listener(events).setServiceParent(gate)
    Listener(events).setServiceParent(gate)
    gate.startService()
    assert events == []  # the store is still opening
    chat.loaded.callback(None)
    assert events == ["listening", "listening", "ready"]


def test_no_ready_when_a_listener_cannot_open():
    events = []
    chat = FakeChat()
    reactor = MemoryReactorClock()
    gate = AfterStore(chat, reactor, ready=lambda: events.append("ready"))
    Listener(events).setServiceParent(gate)
    Listener(events, fail=True).setServiceParent(gate)
    gate.startService()
    chat.loaded.callback(None)
    assert events == ["listening"]
    assert not reactor.running
