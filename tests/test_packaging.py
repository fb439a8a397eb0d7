"""The shipped plumbing works: the wheel installs a working ``twistd chatd``,
the systemd unit and its environment file agree with the daemon, the nginx
example points at it, and CI runs exactly the test command README.rst gives."""

import inspect
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from fakes import FakeSink
from twisted.internet.task import Clock
from twisted.scripts.twistd import ServerOptions

from chatd import wire
from chatd.limits import Limits
from chatd.service import ChatService
from chatd.tap import Options
from chatd.web import WS_PATH

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text(encoding="utf-8")
UNIT_PATH = ROOT / "etc" / "chatd.service"
DEFAULTS = (ROOT / "etc" / "chatd.default").read_text(encoding="utf-8")
NGINX = (ROOT / "etc" / "nginx-chatd.conf").read_text(encoding="utf-8")
TWISTD_MAIN = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


def parse_unit(text: str) -> dict:
    """systemd's INI dialect: repeated keys accumulate, ``\\`` continues a line."""
    sections, current = {}, None
    text = re.sub(r"\\\n", " ", text)
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


UNIT = parse_unit(UNIT_PATH.read_text(encoding="utf-8"))
SERVICE = UNIT["Service"]


def one(key: str) -> str:
    values = SERVICE[key]
    assert len(values) == 1, f"{key} is set {len(values)} times"
    return values[0]


def readme_literal_line(pattern: str) -> str:
    found = re.findall(rf"^    ({pattern})$", README, re.M)
    assert len(found) == 1, f"README.rst should give one command matching {pattern!r}"
    return found[0]


def chatd_opts() -> list[str]:
    match = re.search(r'^CHATD_OPTS="([^"]*)"$', DEFAULTS, re.M)
    assert match, "etc/chatd.default must set CHATD_OPTS"
    # systemd splits $CHATD_OPTS on whitespace only; quotes inside would reach twistd.
    assert not set("'\"\\") & set(match.group(1))
    return match.group(1).split()


# -- README and CI ------------------------------------------------------------
def test_ci_runs_exactly_the_readme_test_command():
    command = readme_literal_line(r"(?:.* )?python3 -m venv .*pytest")
    out = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--print-test-command"],
                         capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == command
    # One line that does everything: the machine, the venv, the package, the suite.
    assert command.startswith("bash scripts/test-setup && python3 -m venv .venv && ")
    assert "'.[test]'" in command and command.endswith(" && .venv/bin/pytest")


def test_test_setup_script_installs_what_readme_says():
    script = ROOT / "scripts" / "test-setup"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    match = re.search(r"^DEB_PACKAGES=\(([^)]*)\)$", script.read_text(), re.M)
    assert match, "scripts/test-setup must list its Debian packages in DEB_PACKAGES=(...)"
    packages = match.group(1).split()
    assert {"python3-venv", "chromium", "postgresql", "redis-server", "nginx"} <= set(packages)
    assert f"``{' '.join(packages)}" in " ".join(README.split())


def test_readme_quick_start_runs_the_daemon_in_the_foreground():
    command = readme_literal_line(r"python3 -m venv .venv && .*twistd.*")
    assert command.endswith("&& .venv/bin/twistd -n chatd")


def options_table_rows() -> list[str]:
    """The README rows for every option ``twistd chatd --help`` prints."""
    config = Options()
    rows = [(f"--{long}", "" if default is None else str(default), doc)
            for long, _short, default, doc, *_ in config.optParameters]
    for name in dir(config):
        if name.startswith("opt_") and name not in ("opt_help", "opt_version"):
            doc = " ".join(inspect.getdoc(getattr(config, name)).split())
            rows.append((f"--{name[4:].replace('_', '-')}", "", doc))
    return [f"``{opt}``".ljust(29) + default.ljust(10) + doc for opt, default, doc in sorted(rows)]


def test_readme_options_table_matches_the_options():
    rows = options_table_rows()
    missing = [row for row in rows if row not in README.splitlines()]
    assert not missing, "README.rst options table is stale; its rows should be:\n" + "\n".join(rows)


def test_help_lists_every_option_in_the_table():
    out = subprocess.run([sys.executable, "-c", TWISTD_MAIN, "-n", "chatd", "--help"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for row in options_table_rows():
        assert row.split("``")[1] + "=" in out.stdout


# -- systemd unit ---------------------------------------------------------------
UNIT_FILES = ["chatd.service", "chatd.socket", "chatd-socket-activated.service"]


def test_units_pass_systemd_analyze_verify(tmp_path):
    # verify insists the ExecStart binary exists; point it at a real twistd.
    twistd = shutil.which("twistd", path=str(Path(sys.executable).parent))
    assert twistd
    for name in UNIT_FILES:
        text = (ROOT / "etc" / name).read_text()
        (tmp_path / name).write_text(text.replace("/opt/chatd/bin/twistd", twistd))
    # Together, so chatd.socket's Service= and the service's Requires= resolve.
    out = subprocess.run(["systemd-analyze", "verify", *UNIT_FILES], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # Unknown or misspelled keys are only warnings; they must not be there either.
    for name in UNIT_FILES:
        assert name not in out.stderr, out.stderr


def test_unit_runs_twistd_in_the_foreground_logging_to_the_journal():
    argv = one("ExecStart").split()
    assert argv[0] == "/opt/chatd/bin/twistd"
    assert argv[-1] == "$CHATD_OPTS", "unbraced so systemd splits it into words"
    config = ServerOptions()
    config.parseOptions(argv[1:-1] + chatd_opts())
    assert config["nodaemon"] and config["pidfile"] == "" and config["logfile"] == "-"
    assert config.subCommand == "chatd"


def test_unit_waits_for_readiness_and_has_a_watchdog():
    # chatd sends READY=1, RELOADING=1 and STOPPING=1 itself (chatd/sdnotify.py).
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert float(one("WatchdogSec").rstrip("s")) >= 10


SOCKET_UNIT = parse_unit((ROOT / "etc" / "chatd.socket").read_text(encoding="utf-8"))
ACTIVATED = parse_unit((ROOT / "etc" / "chatd-socket-activated.service")
                       .read_text(encoding="utf-8"))


def test_socket_activated_unit_is_the_plain_unit_but_for_its_listeners():
    assert SOCKET_UNIT["Socket"]["Service"] == ["chatd-socket-activated.service"]
    assert ACTIVATED["Install"] == UNIT["Install"]
    unit_extra = {k: v for k, v in ACTIVATED["Unit"].items() if UNIT["Unit"].get(k) != v}
    assert unit_extra == {"Requires": ["chatd.socket"],
                          "After": ["network-online.target", "chatd.socket"],
                          "Conflicts": ["chatd.service"]}
    service_diff = {k for k in set(SERVICE) | set(ACTIVATED["Service"])
                    if SERVICE.get(k) != ACTIVATED["Service"].get(k)}
    assert service_diff == {"ExecStart"}


def test_socket_activated_listeners_are_the_sockets_in_order_on_the_default_addresses():
    [execstart] = ACTIVATED["Service"]["ExecStart"]
    argv = execstart.split()
    plain = one("ExecStart").split()
    assert argv[:len(plain) - 1] == plain[:-1] and argv[-1] == "$CHATD_OPTS"
    config = Options()
    config.parseOptions(argv[len(plain) - 1:-1])
    assert config["line"] == ["systemd:domain=INET:index=0"]
    assert config["ws"] == ["systemd:domain=INET:index=1"]
    # The sockets listen where etc/chatd.default's tcp listeners would.
    defaults = Options()
    defaults.parseOptions(chatd_opts())
    assert defaults["line"] == ["tcp:9000"] and \
        defaults["ws"] == ["tcp:8080:interface=127.0.0.1"]
    assert SOCKET_UNIT["Socket"]["ListenStream"] == ["0.0.0.0:9000", "127.0.0.1:8080"]
    assert SOCKET_UNIT["Socket"]["Accept"] == ["no"]


def test_unit_reads_the_environment_file_readme_installs():
    assert one("EnvironmentFile") == "/etc/default/chatd"
    assert "install -m 644 etc/chatd.default /etc/default/chatd" in README
    assert "install -m 644 etc/chatd.service /etc/systemd/system/chatd.service" in README
    assert "python3 -m venv /opt/chatd && /opt/chatd/bin/pip install ." in README


def test_unit_runs_as_a_dedicated_unprivileged_user():
    assert one("DynamicUser") == "yes" or one("User") not in ("", "root")
    assert one("CapabilityBoundingSet") == ""
    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("LimitNOFILE") == "65536"


def test_environment_file_options_are_accepted_by_twistd_chatd():
    config = Options()
    config.parseOptions(chatd_opts())
    assert config["line"] and config["ws"]


def test_environment_file_documents_every_option():
    for row in options_table_rows():
        option = row.split("``")[1]
        assert re.search(rf"^#\s+{re.escape(option)}=", DEFAULTS, re.M), \
            f"{option} is not documented in etc/chatd.default"


def StuckClient():
    """A client that never closes: the service must give up on it by itself."""
    return FakeSink(wire.TEXT)


def test_stop_timeout_outlasts_the_daemons_shutdown_grace():
    clock = Clock()
    chat = ChatService(Limits(), clock=clock)
    chat.startService()
    client = StuckClient()
    chat.connect(client, "127.0.0.1")
    stopped = []
    chat.stopService().addCallback(stopped.append)
    while not stopped and clock.seconds() < 120:
        clock.advance(0.1)
    assert stopped and client.aborted
    grace = clock.seconds()
    timeout = float(one("TimeoutStopSec").rstrip("s"))
    # Leave systemd's SIGKILL for a daemon that is really stuck.
    assert timeout >= grace + 2
    assert one("KillSignal") == "SIGTERM"
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"


# -- nginx example -------------------------------------------------------------------
def test_nginx_example_proxies_websocket_upgrades_to_the_configured_port():
    ws = [o.split("=", 1)[1] for o in chatd_opts() if o.startswith("--ws=")]
    assert ws == ["tcp:8080:interface=127.0.0.1"]
    assert re.search(r"^\s*server 127\.0\.0\.1:8080;", NGINX, re.M)
    location = NGINX.split(f"location = /{WS_PATH.decode()} {{", 1)[1].split("}", 1)[0]
    assert "proxy_http_version 1.1;" in location
    assert "proxy_set_header Upgrade $http_upgrade;" in location
    assert re.search(r"proxy_set_header Connection \$\w+;", location)
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", location).group(1))
    # nginx must not cut an idle but healthy client before chatd's heartbeat does.
    assert read_timeout > Limits().ping_timeout


# -- the wheel ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    # Build from a copy so the working tree's build/ and egg-info are not touched.
    shutil.copytree(ROOT, src, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
        "artifacts", "tests", "store.test_*", "_trial_temp*", "chatd-data"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(src)], check=True, timeout=300)
    (built,) = out.glob("chatd-*.whl")
    return built


def test_wheel_ships_every_package_the_plugin_and_the_web_client(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for init in (ROOT / "chatd").rglob("__init__.py"):
        assert str(init.relative_to(ROOT)) in names, f"{init.parent.name} is not packaged"
    for static in (ROOT / "chatd" / "static").iterdir():
        assert f"chatd/static/{static.name}" in names
    assert "twisted/plugins/chatd_plugin.py" in names
    # The protobuf schema ships beside its generated code (docs/protocol.rst links it).
    assert {"chatd/proto/chatd.proto", "chatd/proto/chatd_pb2.py"} <= names
    # Shipping either of these would shadow Twisted itself once installed.
    assert not {"twisted/__init__.py", "twisted/plugins/__init__.py"} & names
    # The benchmark is a development tool that runs from a checkout (benchmarks/).
    assert not [n for n in names if "bench" in n], names
    assert not any(line.startswith("chatd =") for line in zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode().splitlines())


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(target), str(wheel)], check=True, timeout=300)
    return target


def run_installed(installed, *args, **kw):
    # The installed copy comes first on the path, ahead of any chatd in site-packages;
    # cwd is elsewhere so the working tree cannot be imported by accident.
    env = {**os.environ, "PYTHONPATH": str(installed), "PYTHONUNBUFFERED": "1"}
    return [sys.executable, "-c", TWISTD_MAIN, *args], dict(env=env, cwd=installed.parent, **kw)


def test_installed_wheel_provides_twistd_chatd(installed):
    argv, kw = run_installed(installed, "chatd", "--help")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)
    assert out.returncode == 0, out.stderr
    assert "--line=" in out.stdout and "--ws=" in out.stdout
    probe = subprocess.run([sys.executable, "-c", "import chatd; print(chatd.__file__)"],
                           capture_output=True, text=True, timeout=60,
                           env=kw["env"], cwd=kw["cwd"], check=True)
    assert probe.stdout.startswith(str(installed))


# -- the contributor install (pip install -e .) ----------------------------------------
def dependencies_without_chatd(dest: Path) -> Path:
    """This Python's installed packages, minus any installed chatd, as a symlink farm.

    The fresh venv below gets chatd's dependencies from here (fast, no download),
    but not a chatd installed here, whose ``twisted/plugins/chatd_plugin.py`` would
    make ``twistd chatd`` work whether or not the editable install does.
    """
    import twisted

    site = Path(twisted.__file__).resolve().parent.parent
    skip = ("chatd", "__editable__")

    def farm(src: Path, dst: Path, into: dict):
        dst.mkdir()
        for entry in src.iterdir():
            if entry.name.startswith(skip) or entry.name in ("dropin.cache", "__pycache__"):
                continue
            if entry.name in into:
                farm(entry, dst / entry.name, into[entry.name])
            else:
                (dst / entry.name).symlink_to(entry)

    farm(site, dest, {"twisted": {"plugins": {}}})
    return dest


def test_editable_install_provides_twistd_chatd(tmp_path):
    # The documented contributor install: pip install -e . (here --no-deps, the
    # dependencies come from a farm of this Python's; pip still fetches the build
    # backend, setuptools, from the package index or its cache).
    src = tmp_path / "checkout"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
        "artifacts", "tests", "store.test_*", "_trial_temp*", "chatd-data", "dropin.cache"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    deps = dependencies_without_chatd(tmp_path / "deps")
    (Path(site) / "zz_chatd_test_deps.pth").write_text(f"{deps}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    before = subprocess.run([python, "-c", TWISTD_MAIN, "chatd", "--help"], capture_output=True,
                            text=True, timeout=60, env=env, cwd=tmp_path)
    assert before.returncode != 0, "chatd is visible before it is installed: the test is void"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "-e", str(src)],
                   check=True, timeout=300, env=env, cwd=src)
    out = subprocess.run([python, "-c", TWISTD_MAIN, "chatd", "--help"], capture_output=True,
                         text=True, timeout=60, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "--line=" in out.stdout and "--ws=" in out.stdout
    # Both the plugin and the code it loads come from the checkout, live.
    probe = subprocess.run(
        [python, "-c", "import chatd.tap, twisted.plugins.chatd_plugin as p; "
                       "print(chatd.tap.__file__); print(p.__file__)"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path, check=True)
    assert probe.stdout.split() == [str(src / "chatd" / "tap.py"),
                                    str(src / "twisted" / "plugins" / "chatd_plugin.py")]


class Twistd:
    """A ``twistd`` subprocess whose output is read by a thread, so it never blocks."""

    def __init__(self, argv, **kw):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
        self.lines = queue.Queue()
        self.output = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode("utf-8", "replace"))

    def port(self, factory: str, timeout: float = 30) -> int:
        """The port twistd reports ``factory`` listening on (``LineFactory``, ``Site``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, "".join(self.output)
                continue
            self.output.append(line)
            match = re.search(rf"{factory} starting on (\d+)", line)
            if match:
                return int(match.group(1))
        raise AssertionError(f"no {factory} port within {timeout}s\n" + "".join(self.output))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_installed_daemon_survives_reload_and_stops_cleanly_as_the_unit_expects(installed):
    """What systemctl does: ExecStart's flags, then reload (SIGHUP), then stop (SIGTERM)."""
    flags = one("ExecStart").split()[1:-1]
    argv, kw = run_installed(installed, *flags, "--line=tcp:0:interface=127.0.0.1", "--ws=none")
    daemon = Twistd(argv, **kw)
    proc = daemon.proc
    try:
        port = daemon.port("LineFactory")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"* Welcome to chatd")
            sock.sendall(b"/nick unit\n")
            assert reader.readline() == b"* you are now unit\r\n"
            proc.send_signal(signal.SIGHUP)  # systemctl reload chatd
            sock.sendall(b"/ping\n")
            assert reader.readline() == b"* pong\r\n"
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)  # systemctl stop chatd
            assert reader.readline() == b"* closing connection: server shutting down\r\n"
            assert reader.readline() == b""
        timeout = float(one("TimeoutStopSec").rstrip("s"))
        # Within the time systemd waits before SIGKILL, and reported as success.
        assert proc.wait(timeout=timeout) == 0
    finally:
        daemon.stop()


# -- nginx in front, for real -----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)


@pytest.fixture
def chatd_behind_nginx(tmp_path):
    argv = [sys.executable, "-c", TWISTD_MAIN, "-n", "--pidfile=", "--logfile=-", "chatd",
            "--line=none", "--ws=tcp:0:interface=127.0.0.1",
            # as etc/chatd.default has it, and one connection per address to see it count
            "--trusted-proxy=127.0.0.1", "--max-per-ip=1"]
    daemon = Twistd(argv, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    nginx = None
    try:
        chatd_port = daemon.port("Site")
        port = free_port()
        site = (NGINX.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{chatd_port};")
                .replace("listen 80;", f"listen 127.0.0.1:{port};")
                .replace("listen [::]:80;", ""))
        (tmp_path / "chatd.conf").write_text(site)
        temp = " ".join(f"{kind}_temp_path {tmp_path}/{kind};"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (tmp_path / "nginx.conf").write_text(
            f"daemon off; worker_processes 1; pid {tmp_path}/nginx.pid;\n"
            f"error_log {tmp_path}/error.log;\nevents {{}}\n"
            f"http {{ access_log off; {temp} include {tmp_path}/chatd.conf; }}\n")
        # Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
        binary = shutil.which("nginx", path=os.pathsep.join(
            [os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
        assert binary, "nginx is not installed (scripts/test-setup installs it)"
        nginx = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                                 stderr=subprocess.PIPE)
        wait_listening(port, nginx)
        yield port
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
        daemon.stop()


def test_websocket_chat_works_through_the_nginx_example(chatd_behind_nginx):
    import websocket  # websocket-client, from the test extra

    ws = websocket.create_connection(f"ws://127.0.0.1:{chatd_behind_nginx}/ws", timeout=10)
    try:
        assert json.loads(ws.recv())["type"] == "hello"
        ws.send(json.dumps({"type": "nick", "nick": "proxied", "id": 1}))
        assert json.loads(ws.recv()) == {"type": "ack", "request": "nick", "id": 1,
                                         "nick": "proxied"}
        ws.send(json.dumps({"type": "join", "room": "#edge", "id": 2}))
        ws.send(json.dumps({"type": "message", "text": "through nginx", "id": 3}))
        seen = [json.loads(ws.recv()) for _ in range(4)]
        assert [e["type"] for e in seen] == ["join", "ack", "message", "ack"]
        assert seen[2]["text"] == "through nginx"
    finally:
        ws.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{chatd_behind_nginx}/healthz",
                                timeout=10) as reply:
        assert json.load(reply)["status"] == "ok"


def test_behind_nginx_per_address_limits_count_clients_not_the_proxy(chatd_behind_nginx):
    import websocket  # websocket-client, from the test extra

    def connect(source, **kw):
        sock = socket.create_connection(("127.0.0.1", chatd_behind_nginx), timeout=10,
                                        source_address=(source, 0))
        return websocket.create_connection(f"ws://127.0.0.1:{chatd_behind_nginx}/ws",
                                           socket=sock, timeout=10, **kw)

    # chatd sees every connection come from nginx (127.0.0.1), yet two people on
    # two addresses both get in under --max-per-ip=1 ...
    alice, bob = connect("127.0.0.2"), connect("127.0.0.3")
    try:
        assert json.loads(alice.recv())["type"] == "hello"
        assert json.loads(bob.recv())["type"] == "hello"
        # ... and a second connection from one of them is refused, whatever
        # X-Forwarded-For it claims: nginx appends the real address last.
        spoof = connect("127.0.0.2", header=["X-Forwarded-For: 198.51.100.7"])
        try:
            refusal = json.loads(spoof.recv())
            assert refusal["code"] == "too_many_from_ip", refusal
        finally:
            spoof.close()
    finally:
        alice.close()
        bob.close()
