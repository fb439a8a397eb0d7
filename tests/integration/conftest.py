"""Run the real daemon (``twistd -n chatd``) as a subprocess on ephemeral ports.

A test module sets ``DAEMON_OPTIONS = [...]`` (extra ``chatd`` options) and
uses the module-scoped ``daemon`` fixture; a test that needs a daemon of its
own (one it will SIGTERM, or one with odd limits) calls ``start_daemon(...)``.
Every daemon is stopped with SIGTERM at the end and must exit 0; the log of a
failing test's daemon is attached to the pytest report.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .clients import LineClient, PBClient, WSClient
from .irc_clients import IrcClient, IrcWSClient

# The checkout this file lives in, so a clean clone tests its own code.
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
_PORT_RE = re.compile(r"\b(LineFactory|Site|AdminSite|IrcFactory) starting on (\d+)")


class Daemon:
    def __init__(self, workdir: Path, options=(), *, env=None, wrap=(), pass_fds=(),
                 listen=None):
        self.workdir = workdir
        self.options = list(options)
        # Most tests follow each join, part and quit notice alone, as a quiet
        # room sends them; a test of a storm's coalesced notices gives its own
        # --coalesce-window (tests/integration/test_notices_e2e.py).
        if not any(o.startswith("--coalesce-window") for o in self.options):
            self.options[:0] = ["--coalesce-window", "0"]
        # For running it as systemd would (tests/integration/test_systemd.py):
        # extra environment, a launcher in front of the command line (e.g.
        # systemd-socket-activate), descriptors it inherits, and listener options
        # replacing the default ephemeral tcp ones.
        self.env = dict(env or {})
        self.wrap = list(wrap)
        self.pass_fds = tuple(pass_fds)
        self.listen = listen
        self.log_path = workdir / "chatd.log"
        self.out_path = workdir / "stdout.txt"
        self.proc = None
        self.line_port = None
        self.ws_port = None
        self.admin_port = None  # the first --admin listener's, if any
        self.irc_port = None  # the first --irc listener's, if any
        self.returncode = None
        self.terminated = False
        self.clients = []  # opened by the running test; closed after it

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "Daemon":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.returncode = None
        self.terminated = False
        # twistd appends; ports are read from this run's lines only.
        self.log_path.unlink(missing_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.update(self.env)
        listen = self.listen
        if listen is None:
            # Ephemeral ports the first time; a restart keeps the same ones.
            listen = ["--line", f"tcp:{self.line_port or 0}:interface=127.0.0.1",
                      "--ws", f"tcp:{self.ws_port or 0}:interface=127.0.0.1"]
        args = [*self.wrap, sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", f"--logfile={self.log_path}",
                "chatd", *listen, *self.options]
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(args, cwd=self.workdir, env=env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         pass_fds=self.pass_fds)
        try:
            self._learn_ports()
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def _learn_ports(self) -> None:
        # twistd logs "<factory> starting on <port>" once the port is bound:
        # the only place an ephemeral port is visible from outside.
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ports = dict()
            for kind, port in _PORT_RE.findall(self.log()):
                ports.setdefault(kind, int(port))
            wants_admin = any(o == "--admin" or o.startswith("--admin=") for o in self.options)
            wants_irc = any(o == "--irc" or o.startswith("--irc=") for o in self.options)
            if "LineFactory" in ports and "Site" in ports and (
                    "AdminSite" in ports or not wants_admin) and (
                    "IrcFactory" in ports or not wants_irc):
                self.line_port, self.ws_port = ports["LineFactory"], ports["Site"]
                self.admin_port = ports.get("AdminSite")
                self.irc_port = ports.get("IrcFactory")
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"chatd exited with {self.proc.returncode}\n{self.output()}")
            time.sleep(0.05)
        raise RuntimeError(f"chatd never reported its ports\n{self.output()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.line_port), timeout=2) as s:
                    if s.recv(1024).startswith(b"* Welcome"):
                        self.health()
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"chatd does not answer\n{self.output()}")
                time.sleep(0.05)

    def terminate(self) -> None:
        """Send SIGTERM once (a second one mid-shutdown makes twistd log an error)."""
        if not self.terminated:
            self.terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait; the exit status (idempotent)."""
        if self.returncode is None:
            self.terminate()
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"chatd did not exit within {timeout}s of SIGTERM\n"
                                     f"{self.output()}")
        return self.returncode

    def restart(self) -> "Daemon":
        """SIGTERM, check the exit was clean, start again on the same ports and workdir."""
        self.stop()
        if not self.exited_cleanly():
            raise AssertionError(f"chatd exited with {self.returncode} after SIGTERM\n"
                                 f"{self.output()}")
        return self.start()

    def exited_cleanly(self) -> bool:
        """Exit status 0 after SIGTERM, with twistd's orderly shutdown in the log
        (chatd replaces twistd's habit of re-raising the signal, see chatd/signals.py)."""
        return self.returncode == 0 and "Server Shut Down." in self.log()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.returncode = self.proc.returncode

    # -- inspection --------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output(self) -> str:
        out = self.out_path.read_text(errors="replace") if self.out_path.exists() else ""
        return f"--- chatd log ---\n{self.log()}\n--- chatd stdout/stderr ---\n{out}"

    def health(self) -> dict:
        url = f"http://127.0.0.1:{self.ws_port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))

    def wait_for(self, condition, what: str, timeout: float = 5.0):
        """Poll ``condition()`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)

    def wait_connections(self, n: int, timeout: float = 5.0) -> None:
        self.wait_for(lambda: self.health()["connections"] == n,
                      f"{n} connections (now {self.health()['connections']})", timeout)

    # -- clients -----------------------------------------------------------
    def line(self, **kw) -> LineClient:
        c = LineClient(self.line_port, **kw)
        self.clients.append(c)
        return c

    def ws(self, **kw) -> WSClient:
        c = WSClient(self.ws_port, **kw)
        self.clients.append(c)
        return c

    def pb(self, **kw) -> PBClient:
        """A WebSocket client on the chatd.protobuf.v1 subprotocol."""
        c = PBClient(self.ws_port, **kw)
        self.clients.append(c)
        return c

    def register_account(self, nick: str, password: str) -> None:
        """Register ``nick`` from a line client, which then quits (the nick is free)."""
        c = self.line().login(nick)
        c.send(f"/register {password}")
        c.expect("is now registered to you")
        c.send("/quit")
        c.expect_closed()

    def irc(self, **kw) -> IrcClient:
        """An IRC client on the first --irc listener."""
        c = IrcClient(self.irc_port, **kw)
        self.clients.append(c)
        return c

    def ircws(self, **kw) -> IrcWSClient:
        """An IRC-over-WebSocket client at /irc on the HTTP port."""
        c = IrcWSClient(self.ws_port, **kw)
        self.clients.append(c)
        return c

    def close_clients(self) -> None:
        clients, self.clients = self.clients, []
        for c in clients:
            c.close()


@pytest.fixture(autouse=True)
def _close_clients(request):
    """A failing test must not leave its users online for the next one."""
    yield
    for value in list(request.node.funcargs.values()):
        for d in _daemons_in(value):
            d.close_clients()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        seen = set()
        for value in getattr(item, "funcargs", {}).values():
            for d in _daemons_in(value):
                if id(d) not in seen:
                    seen.add(id(d))
                    report.sections.append(
                        (f"chatd (pid {d.proc.pid if d.proc else '-'}) output",
                         d.output()[-20000:]))


def _daemons_in(value):
    if isinstance(value, Daemon):
        yield value
    elif isinstance(value, DaemonStarter):
        yield from value.started


class DaemonStarter:
    """``start_daemon(*options)``: start a daemon of one's own; stopped at teardown."""

    def __init__(self, tmp_path_factory):
        self.tmp_path_factory = tmp_path_factory
        self.started = []

    def __call__(self, *options, start=True, **kw) -> Daemon:
        """``kw``: Daemon's env, wrap, pass_fds, listen; ``start=False`` to start it later."""
        d = Daemon(self.tmp_path_factory.mktemp("chatd"), options, **kw)
        self.started.append(d)
        return d.start() if start else d

    def stop_all(self) -> None:
        problems = []
        for d in self.started:
            if d.proc is None:
                continue
            try:
                rc = d.stop()
            except AssertionError as e:
                problems.append(str(e))
                continue
            if not d.exited_cleanly():
                problems.append(f"chatd exited with {rc} after SIGTERM\n{d.output()}")
            elif "Traceback" in d.log():
                # Every failure inside the daemon is a bug, even one a client never saw.
                problems.append(f"chatd logged a traceback\n{d.output()}")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def start_daemon(tmp_path_factory):
    starter = DaemonStarter(tmp_path_factory)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def daemon(request, tmp_path_factory):
    """One daemon per test module, started with the module's ``DAEMON_OPTIONS``."""
    starter = DaemonStarter(tmp_path_factory)
    d = starter(*getattr(request.module, "DAEMON_OPTIONS", ()))
    yield d
    starter.stop_all()


@pytest.fixture
def cluster(start_daemon):
    """Nodes on a PostgreSQL database and a Redis key prefix of this test's own,
    both removed afterwards (tests/integration/cluster.py)."""
    from .cluster import Cluster, cluster_storage  # cluster.py imports this module
    with cluster_storage() as (db, prefix):
        yield Cluster(start_daemon, db, prefix)


@pytest.fixture
def proxy():
    """A TCP proxy to the shared PostgreSQL that the test can cut or black-hole
    (tests/proxies.py); the server itself is never stopped."""
    from proxies import Proxy
    p = Proxy("127.0.0.1", 5432)
    yield p
    p.close()
