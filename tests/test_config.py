"""The configuration file (chatd.config), the annotated example etc/chatd.toml, a
reload's effect on the running service (chatd.reload), the MOTD and the log level."""

import re
import tomllib
from pathlib import Path

import pytest
from fakes import FakeSink
from twisted.application.service import Application, IServiceCollection
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogLevel, capturedLogs, formatEvent
from twisted.python import usage

from chatd import config, wire
from chatd.admission import Admission
from chatd.events import Hello, Notice
from chatd.limits import Limits
from chatd.loglevel import LevelFilter, LevelledTop
from chatd.reload import LIVE, Reloader
from chatd.service import ChatService
from chatd.tap import Options
from chatd.tls import ReloadOnHangup

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "etc" / "chatd.toml"


def parse(*argv) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


@pytest.fixture
def conf(tmp_path):
    """Write a configuration file; returns its path."""
    path = tmp_path / "chatd.toml"

    def write(text: str) -> str:
        path.write_text(text)
        return str(path)
    return write


# -- precedence ------------------------------------------------------------------------
def test_the_file_fills_in_what_the_command_line_does_not_say(conf):
    path = conf('max-per-ip = 50\nrate = 2\nname = "from-file"\nline = ["tcp:7000", "tcp:7001"]\n'
                'operators = ["Alice"]\nlog-level = "warn"\n')
    options = parse("--config", path)
    assert options["max-per-ip"] == 50 and options["limits"].max_per_ip == 50
    assert options["rate"] == 2.0 and isinstance(options["rate"], float)
    assert options["name"] == "from-file"
    assert options["line"] == ["tcp:7000", "tcp:7001"]
    assert options["operators"] == ["Alice"]
    assert options["log-level"] == "warn"


@pytest.mark.parametrize("config_first", [True, False])
def test_the_command_line_wins_wherever_config_is(conf, config_first):
    path = conf('max-per-ip = 50\nline = ["tcp:7000"]\nhistory = 5\n')
    cli = ["--max-per-ip", "7", "--line", "tcp:9999", "--history=50"]
    options = parse(*(["--config", path] + cli if config_first else cli + ["--config", path]))
    # --history=50 is the default, said explicitly: it still wins over the file.
    assert (options["max-per-ip"], options["line"], options["history"]) == (7, ["tcp:9999"], 50)
    assert options["limits"].max_per_ip == 7


def test_abbreviated_options_count_as_given(conf):
    path = conf("max-per-ip = 50\n")
    assert parse("--max-per", "3", "--config", path)["max-per-ip"] == 3


def test_without_a_file_nothing_changes():
    assert parse()["config"] is None and parse()["limits"] == Limits()


# -- errors: file, key, problem --------------------------------------------------------
def error(*argv) -> str:
    with pytest.raises(usage.UsageError) as e:
        parse(*argv)
    return str(e.value)


def test_a_missing_file(tmp_path):
    missing = tmp_path / "nope.toml"
    assert error("--config", str(missing)) == f"{missing}: cannot read: No such file or directory"


def test_a_file_that_is_not_toml(conf):
    path = conf("max-per-ip = = 5\n")
    assert error("--config", path).startswith(f"{path}: not valid TOML: ")


@pytest.mark.parametrize("text, message", [
    ("max-mesage = 5\n", "max-mesage: unknown key (did you mean 'max-message'?)"),
    ("config = 'other.toml'\n", "config: unknown key"),
    ("[limits]\nrate = 1\n", "limits: unknown key"),
    ("max-per-ip = '5'\n", "max-per-ip: must be an integer, not str"),
    ("max-per-ip = 5.5\n", "max-per-ip: must be an integer, not float"),
    ("max-per-ip = true\n", "max-per-ip: must be an integer, not bool"),
    ("rate = 'fast'\n", "rate: must be a number, not str"),
    ("name = 5\n", "name: must be a string, not int"),
    ("line = 'tcp:9000'\n", "line: must be a list of strings, not str"),
    ("line = [9000]\n", "line: must be a list of strings, not list"),
])
def test_unknown_keys_and_wrong_types(conf, text, message):
    path = conf(text)
    assert error("--config", path) == f"{path}: {message}"


@pytest.mark.parametrize("text, message", [
    ("max-per-ip = -1\n", "max-per-ip: max_per_ip must be positive"),
    ("rate = 0\n", "rate: rate must be positive"),
    ("ping-interval = 90.0\n", "ping-interval: ping_timeout must be longer than ping_interval"),
    ("history = 100000\n", "history: --history is 0-"),
    ("store-timeout = -1.0\n", "store-timeout: --store-timeout must be positive"),
    ("node-timeout = 0.5\n", "node-timeout: --node-timeout is at least 1 second"),
    ("log-level = 'loud'\n", "log-level: --log-level is one of debug, info, warn, error"),
    ("sqlite-sync = 'maybe'\n", "sqlite-sync: --sqlite-sync is one of"),
    ("trusted-proxy = ['proxy.example']\n",
     "trusted-proxy: --trusted-proxy: 'proxy.example' is not an IP address"),
    ("operators = ['not a nick']\n", "operators: --operators: 'not a nick': a nick is"),
    ("tls-cert = 'cert.pem'\n", "tls-cert: --tls-cert and --tls-key go together"),
])
def test_invalid_values_are_checked_by_the_options_own_rules(conf, text, message):
    path = conf(text)
    assert error("--config", path).startswith(f"{path}: {message}")


def test_an_invalid_command_line_value_is_not_blamed_on_the_file(conf):
    path = conf("rate = 1\n")
    assert error("--config", path, "--max-per-ip", "0") == "max_per_ip must be positive"


# -- the MOTD ----------------------------------------------------------------------------
def test_motd_lines(tmp_path):
    motd = tmp_path / "motd"
    motd.write_bytes("Welcome!\r\nBe kind — please.\n\n".encode())
    assert config.read_motd(str(motd)) == ("Welcome!", "Be kind — please.")
    motd.write_text("\n")
    assert config.read_motd(str(motd)) == ()


@pytest.mark.parametrize("data, problem", [
    (b"x" * 4097, "the MOTD is longer than 4096 bytes"),
    (b"caf\xe9\n", "the MOTD is not UTF-8"),
    (b"ok\nbell\x07\n", "line 2: control character U+0007 in the MOTD"),
    (b"\x1b[31mred\n", "line 1: control character U+001B in the MOTD"),
    (b"tab\there\n", "line 1: control character U+0009 in the MOTD"),
])
def test_a_bad_motd_is_refused(tmp_path, data, problem):
    motd = tmp_path / "motd"
    motd.write_bytes(data)
    assert error("--motd", str(motd)) == f"{motd}: {problem}"


def test_motd_is_sent_after_the_hello_as_notices():
    chat = ChatService(Limits(), clock=Clock(), motd=("one", "two"))
    sink = FakeSink()
    chat.connect(sink, "10.0.0.1")
    assert isinstance(sink.payloads[0], Hello)
    assert sink.payloads[1:] == [Notice("one"), Notice("two")]
    text = FakeSink(wire.TEXT)
    chat.connect(text, "10.0.0.1")
    assert text.payloads[1:] == [b"* one\r\n", b"* two\r\n"]


# -- the annotated example ---------------------------------------------------------------
_SETTING = re.compile(r"^# (?P<key>[a-z][a-z0-9-]*) = (?P<value>.*)$", re.M)


def example_settings() -> dict:
    """Every commented-out setting in etc/chatd.toml, parsed as TOML."""
    text = EXAMPLE.read_text(encoding="utf-8")
    return tomllib.loads("\n".join(m.group(0)[2:] for m in _SETTING.finditer(text)))


def test_the_example_lists_every_option_and_nothing_else():
    keys = list(example_settings())
    assert sorted(keys) == sorted(config.schema(Options()))


def test_the_example_shows_each_default_or_an_example_where_there_is_none():
    defaults = parse()
    for key, value in example_settings().items():
        if defaults[key] not in (None, []):
            assert value == defaults[key], key


def test_every_example_value_parses(tmp_path):
    # Files the example names do not exist here; the rest goes through the real checks.
    settings = {k: v for k, v in example_settings().items()
                if k not in ("tls-cert", "tls-key", "motd", "admin-token-file")}
    path = tmp_path / "all.toml"
    path.write_text("\n".join(f"{k} = {toml_value(v)}" for k, v in settings.items()))
    options = parse("--config", str(path))
    assert options["operators"] == ["alice", "bob"]
    assert options["db"].startswith("postgresql://")


def toml_value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value + '"'
    return repr(value)


def test_the_example_marks_exactly_the_settings_a_reload_applies():
    text = EXAMPLE.read_text(encoding="utf-8")
    marked = set()
    for block in text.split("\n\n"):
        setting = _SETTING.search(block)
        if setting and re.search(r"^# \[(live|new connections)\]", block, re.M):
            marked.add(setting.group("key"))
    assert marked == LIVE


# -- reload ------------------------------------------------------------------------------
class FakeTLS:
    def __init__(self):
        self.reloads = []

    def reload(self, cert_path=None, key_path=None):
        self.reloads.append((cert_path, key_path))
        return True


@pytest.fixture
def running(conf):
    """A service, its admission and a reloader, started from a file; ``write`` edits it."""
    path = conf("max-message = 100\nrate = 5\nmax-per-ip = 10\n")
    options = parse("--config", path, "--name", "cmdline")
    clock = Clock()
    chat = ChatService(options["limits"], clock=clock)
    admission = Admission.from_limits(options["limits"], clock=clock)
    levels = LevelFilter(options["log-level"])
    reloader = Reloader(options, chat, admission, None, levels)

    class Running:
        pass
    r = Running()
    r.chat, r.admission, r.reloader, r.levels, r.clock = chat, admission, reloader, levels, clock
    r.write = conf
    return r


def messages(captured) -> list[str]:
    return [formatEvent(e) for e in captured]


def test_reload_replaces_the_limits_everywhere_they_are_held(running):
    chat = running.chat
    session = chat.connect(FakeSink(), "10.0.0.1")
    throttle = chat.accounts.login_throttle
    throttle.check("conn", "10.9.9.9")  # a failed-login attempt counted before the reload
    running.write("max-message = 50\nrate = 1\nmax-per-ip = 2\nmax-connections = 3\n"
                  "login-fails-per-conn = 2\nnew-rooms-per-minute = 3\nmax-nick = 10\n")
    with capturedLogs() as captured:
        assert running.reloader.reload()
    limits = chat.limits
    assert (limits.max_message, limits.rate, limits.max_per_ip) == (50, 1.0, 2)
    assert chat.accounts.limits is limits and chat.mod.limits is limits
    assert chat.nicks.max_nick == 10
    # Its numbers changed in place: what it had counted stays counted.
    assert chat.accounts.login_throttle is throttle
    assert chat.accounts.login_throttle.conns.limit == 2
    assert throttle.conns.level("conn") == 1
    assert (running.admission.max_per_ip, running.admission.max_connections) == (2, 3)
    # The session already connected is held to the new rate.
    assert (session.bucket.rate, session.bucket.capacity) == (1.0, 20)
    said = messages(captured)
    assert "reload: max-message is now 50" in said
    assert "reload: rate is now 1.0" in said
    assert "reload: max-per-ip is now 2" in said


def test_unchanged_throttles_keep_their_counts(running):
    throttle = running.chat.accounts.login_throttle
    running.write("max-message = 60\nrate = 5\nmax-per-ip = 10\n")
    running.reloader.reload()
    assert running.chat.accounts.login_throttle is throttle


def test_a_bad_file_keeps_the_old_settings_and_logs_the_key(running):
    before = running.chat.limits
    running.write("max-message = 10\nmax-per-ip = -5\n")
    with capturedLogs() as captured:
        assert not running.reloader.reload()
    assert running.chat.limits is before
    [failure] = [e for e in captured if e["log_level"] == LogLevel.error]
    assert "keeping the old settings" in formatEvent(failure)
    assert "max-per-ip: max_per_ip must be positive" in formatEvent(failure)


def test_settings_that_need_a_restart_are_logged_and_keep_running(running):
    running.write("max-message = 100\nrate = 5\nmax-per-ip = 10\nmax-frame = 100\n"
                  "data-dir = '/elsewhere'\ndb = 'postgresql://chat:s3cret@db/chat'\n")
    with capturedLogs() as captured:
        running.reloader.reload()
    said = "\n".join(messages(captured))
    for key in ("max-frame", "data-dir", "db"):
        assert f"reload: {key} changed in the configuration; it needs a restart" in said
    assert "s3cret" not in said
    assert running.chat.limits.max_frame == Limits().max_frame
    assert running.reloader.options["data-dir"] == "./chatd-data"
    # The next reload still compares with what runs.
    with capturedLogs() as captured:
        running.reloader.reload()
    assert "reload: data-dir changed" in "\n".join(messages(captured))


def test_the_command_line_still_wins_on_reload(running):
    running.write("max-message = 100\nname = 'from-file'\n")
    running.reloader.reload()
    assert running.reloader.options["name"] == "cmdline"


def test_reload_updates_motd_operators_and_log_level(running, tmp_path):
    motd = tmp_path / "motd"
    motd.write_text("New rules.\n")
    running.write(f"motd = '{motd}'\noperators = ['Alice', 'bob']\nlog-level = 'error'\n")
    running.reloader.reload()
    assert running.chat.motd == ("New rules.",)
    assert running.chat.operators == {"alice", "bob"}
    assert running.levels.level == LogLevel.error
    # The file's text changes, its name does not: the MOTD still reloads.
    motd.write_text("Newer rules.\n")
    with capturedLogs() as captured:
        running.reloader.reload()
    assert running.chat.motd == ("Newer rules.",)
    assert [formatEvent(e) for e in captured if "MOTD" in formatEvent(e)] == [
        "reload: the MOTD is now 1 lines"]


def test_an_unchanged_file_says_so(running):
    with capturedLogs() as captured:
        running.reloader.reload()
    assert "reload: no setting changed" in messages(captured)


def test_reload_reloads_the_certificate_whatever_the_file_says(running):
    tls = running.reloader.tls = FakeTLS()
    running.reloader.reload()
    running.write("rate = -1\n")
    running.reloader.reload()
    assert len(tls.reloads) == 2


def test_a_changed_ping_interval_restarts_the_heartbeat(running):
    chat = running.chat
    chat.startService()
    running.write("ping-interval = 4.0\nping-timeout = 10.0\n")
    running.reloader.reload()
    assert chat.heartbeat_tick == 2.0
    sink = FakeSink()
    chat.connect(sink, "10.0.0.1")
    running.clock.advance(4.0)
    running.clock.advance(2.0)
    assert sink.pings == 1
    chat.stopService()


# -- the SIGHUP handler ---------------------------------------------------------------------
def test_sighup_runs_the_reload_and_survives_its_failure():
    calls = []

    def reload():
        calls.append(1)
        raise RuntimeError("boom")
    hup = ReloadOnHangup(None, Clock(), reload)
    with capturedLogs() as captured:
        hup._reload()
    assert calls == [1]
    assert any("SIGHUP: reload failed" in formatEvent(e) for e in captured)


# -- the log level ----------------------------------------------------------------------------
def test_the_level_filter_drops_what_is_below_it():
    seen = []
    levels = LevelFilter("warn")
    observer = levels.wrap(seen.append)
    for level in (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error):
        observer({"log_level": level, "log_namespace": "x", "log_format": ""})
    observer({"log_format": "no level, no namespace"})
    assert [e.get("log_level") for e in seen] == [LogLevel.warn, LogLevel.error, None]
    levels.set("debug")
    observer({"log_level": LogLevel.debug, "log_namespace": "x", "log_format": ""})
    assert len(seen) == 4


def test_the_top_service_puts_the_filter_in_front_of_twistds_log(tmp_path):
    app = Application("chatd")
    levels = LevelFilter("info")
    top = LevelledTop(levels, {"logfile": str(tmp_path / "chatd.log"), "nodaemon": True})
    top.setServiceParent(app)
    observer = app.getComponent(ILogObserver)
    assert observer is not None and top.parent is IServiceCollection(app)
    observer({"log_level": LogLevel.debug, "log_namespace": "x", "log_format": "hidden",
              "log_time": 0})
    observer({"log_level": LogLevel.info, "log_namespace": "x", "log_format": "shown",
              "log_time": 0})
    text = (tmp_path / "chatd.log").read_text()
    assert "shown" in text and "hidden" not in text


def test_admission_and_room_creation_counts_restart_only_when_their_limit_changes(running):
    rate, creations = running.admission.rate, running.chat._creations.counts
    running.write("max-message = 100\nrate = 5\nmax-per-ip = 10\nmax-connections = 50\n")
    running.reloader.reload()
    assert running.admission.rate is rate and running.chat._creations.counts is creations
    running.write("connects-per-minute = 5\nnew-rooms-per-minute = 2\n")
    running.reloader.reload()
    assert running.admission.rate.limit == 5
    assert running.chat._creations.counts.limit == 2
