"""``twistd chatd`` options and the service tree makeService builds (nothing listens)."""

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.web.server import Site

from chatd.limits import Limits
from chatd.metrics import LagProbe
from chatd.passwords import Argon2Params
from chatd.protocols.irc import IrcFactory
from chatd.protocols.line import LineFactory
from chatd.sdnotify import SystemdNotifier
from chatd.service import ChatService
from chatd.signals import StopOnTerm
from chatd.tap import AfterStore, Options, WhenStopping, makeService
from chatd.tls import ReloadOnHangup

DEFAULT_LIMITS = {
    "max-line": 4096, "max-frame": 16384, "max-message": 2000, "max-nick": 24,
    "max-room": 50, "max-rooms-per-session": 20, "rate": 5.0, "burst": 20, "reconnect-burst": 24,
    "flood-strikes": 30, "nick-interval": 5.0, "max-connections": 20000, "max-per-ip": 100,
    "send-queue": 262144, "ping-interval": 30.0, "ping-timeout": 60.0,
    "register-timeout": 60.0, "offline-queue": 100, "max-kept-rooms": 10,
    "new-rooms-per-minute": 10, "connects-per-minute": 60,
    "login-fails-per-conn": 5, "login-fails-per-addr": 20, "login-window": 900.0,
    "login-delay": 2.0, "register-per-addr": 3, "register-window": 3600.0,
    "register-per-minute": 20, "throttle-entries": 10000, "hash-threads": 2,
    "hash-queue": 100, "resume-ttl": 604800.0,
    "request-timeout": 10.0, "ipv6-prefix": 64, "coalesce-window": 1.0, "large-room": 500,
}
DEFAULT_ARGON2 = {"argon2-time-cost": 2, "argon2-memory-cost": 65536, "argon2-parallelism": 1}
# chatd.config: the file, the MOTD, the operators and the log level (tests/test_config.py).
DEFAULT_RELOADABLE = {"config": None, "motd": None, "motd-lines": (), "operators": [],
                      "log-level": "info"}


def parse(*argv) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_defaults():
    assert dict(parse()) == {
        "name": "chatd", "tls-cert": None, "tls-key": None,
        "data-dir": "./chatd-data", "db": None, "history": 50, "sqlite-sync": "full",
        "send-window": 0.0, "commit-window": 0.0, "store-timeout": 10.0, "node-timeout": 10.0,
        "redis": None, "redis-prefix": "chatd:", "node-id": None,
        "line": ["tcp:9000"], "ws": ["tcp:8080"], "irc": [], "trusted-proxy": [],
        "allowed-origin": [],
        "log-format": "text", "admin-token-file": None, "admin-token": None,
        "admin": [],
        **DEFAULT_LIMITS,
        "limits": Limits(),
        **DEFAULT_ARGON2, "argon2": Argon2Params(), **DEFAULT_RELOADABLE,
    }


def test_full_command_line():
    options = parse(
        "--name", "town-square",
        "--line", "tcp:7000:interface=127.0.0.1", "--line", "unix:/tmp/chat.sock",
        "--ws", "none", "--irc", "tcp:6667", "--irc", "unix:/tmp/irc.sock",
        "--trusted-proxy", "127.0.0.1", "--trusted-proxy", "::1",
        "--admin", "tcp:9100:interface=127.0.0.1",
        "--data-dir", "/var/lib/chatd", "--db", "postgresql://chat@db/chat", "--history", "20",
        "--sqlite-sync", "normal", "--store-timeout", "2.5", "--offline-queue", "7",
        "--send-window", "0.003", "--commit-window", "0.002",
        "--node-timeout", "4",
        "--redis", "redis://:pw@cache.internal:6380/2", "--redis-prefix", "chat1:",
        "--node-id", "node-a",
        "--max-kept-rooms", "2", "--new-rooms-per-minute", "4", "--connects-per-minute", "30",
        "--max-line", "1024", "--max-frame", "8192", "--max-message", "500",
        "--max-nick", "16", "--max-room", "32", "--max-rooms-per-session", "5",
        "--rate", "2.5", "--burst", "10", "--flood-strikes", "7", "--nick-interval", "1.5",
        "--max-connections", "300", "--max-per-ip", "3", "--send-queue", "65536",
        "--ping-interval", "20", "--ping-timeout", "45", "--register-timeout", "30",
        "--login-fails-per-conn", "3", "--login-fails-per-addr", "10",
        "--login-window", "600", "--login-delay", "0.5", "--register-per-addr", "2",
        "--register-window", "7200", "--register-per-minute", "5",
        "--throttle-entries", "5000", "--hash-threads", "4", "--hash-queue", "50",
        "--resume-ttl", "3600", "--coalesce-window", "0", "--large-room", "0",
        "--reconnect-burst", "9",
        "--argon2-time-cost", "3", "--argon2-memory-cost", "19456", "--argon2-parallelism", "2",
    )
    limits = {
        "max-line": 1024, "max-frame": 8192, "max-message": 500, "max-nick": 16,
        "max-room": 32, "max-rooms-per-session": 5, "rate": 2.5, "burst": 10,
        "reconnect-burst": 9,
        "flood-strikes": 7, "nick-interval": 1.5, "max-connections": 300, "max-per-ip": 3,
        "send-queue": 65536, "ping-interval": 20.0, "ping-timeout": 45.0,
        "register-timeout": 30.0, "offline-queue": 7, "max-kept-rooms": 2,
        "new-rooms-per-minute": 4, "connects-per-minute": 30,
        "login-fails-per-conn": 3, "login-fails-per-addr": 10, "login-window": 600.0,
        "login-delay": 0.5, "register-per-addr": 2, "register-window": 7200.0,
        "register-per-minute": 5, "throttle-entries": 5000, "hash-threads": 4,
        "hash-queue": 50, "resume-ttl": 3600.0,
        "request-timeout": 10.0, "ipv6-prefix": 64, "coalesce-window": 0.0, "large-room": 0,
    }
    assert dict(options) == {
        "name": "town-square", "tls-cert": None, "tls-key": None,
        "data-dir": "/var/lib/chatd", "db": "postgresql://chat@db/chat", "history": 20,
        "sqlite-sync": "normal", "send-window": 0.003, "commit-window": 0.002,
        "store-timeout": 2.5,
        "node-timeout": 4.0,
        "redis": "redis://:pw@cache.internal:6380/2", "redis-prefix": "chat1:",
        "node-id": "node-a",
        "line": ["tcp:7000:interface=127.0.0.1", "unix:/tmp/chat.sock"], "ws": [],
        "irc": ["tcp:6667", "unix:/tmp/irc.sock"],
        "trusted-proxy": ["127.0.0.1", "::1"], "allowed-origin": [],
        "log-format": "text", "admin-token-file": None, "admin-token": None,
        "admin": ["tcp:9100:interface=127.0.0.1"],
        **limits,
        "limits": Limits(**{k.replace("-", "_"): v for k, v in limits.items()}),
        "argon2-time-cost": 3, "argon2-memory-cost": 19456, "argon2-parallelism": 2,
        "argon2": Argon2Params(time_cost=3, memory_cost=19456, parallelism=2),
        **DEFAULT_RELOADABLE,
    }
    assert isinstance(options["rate"], float) and isinstance(options["burst"], int)


def test_none_turns_a_front_end_off():
    options = parse("--line", "none", "--ws", "tcp:0")
    assert (options["line"], options["ws"]) == ([], ["tcp:0"])


@pytest.mark.parametrize("argv", [
    ["--ping-interval", "60", "--ping-timeout", "30"],
    ["--ping-interval", "30", "--ping-timeout", "30"],
    ["--max-per-ip", "-1"],
    ["--burst", "0"],
    ["--rate", "-0.5"],
    ["--send-queue", "lots"],
    ["--max-line", "1.5"],
    ["--line", "tls:9443"],
    ["--tls-cert", "/nonexistent.pem"],
    ["--frobnicate"],
    ["--db", "mysql://x/y"],
    ["--redis", "127.0.0.1:6379"],
    ["--redis", "redis://cache:port/0"],
    ["--redis-prefix", ""],
    ["--node-id", "node a"],
    ["--history", "-1"],
    ["--history", "100000"],
    ["--sqlite-sync", "off"],
    ["--send-window", "-0.001"],
    ["--send-window", "0.5"],
    ["--commit-window", "-1"],
    ["--commit-window", "0.2"],
    ["--trusted-proxy", "nginx.local"],
    ["--hash-threads", "0"],
    ["--hash-queue", "-1"],
    ["--login-window", "0"],
    ["--register-per-minute", "0"],
    ["--throttle-entries", "0"],
    ["--argon2-time-cost", "0"],
    ["--argon2-parallelism", "0"],
    ["--argon2-memory-cost", "7"],
    ["--argon2-memory-cost", "15", "--argon2-parallelism", "2"],
    ["--argon2-memory-cost", "lots"],
])
def test_bad_values_are_usage_errors(argv):
    with pytest.raises(usage.UsageError):
        parse(*argv)


def test_help_lists_options():
    text = str(Options())
    for option in ("--line", "--ws", "--ping-timeout", "--send-queue", "--max-per-ip",
                   "--login-fails-per-addr", "--register-per-minute", "--hash-threads",
                   "--argon2-memory-cost"):
        assert option in text


def endpoint_port(svc):
    return svc.endpoint._port


def test_make_service_builds_chat_and_listeners():
    reactor = MemoryReactorClock()
    top = makeService(parse("--name", "x", "--line", "tcp:7001", "--line", "tcp:7002",
                            "--ws", "tcp:7003", "--burst", "9"), reactor=reactor)
    children = list(top)
    chat = children[0]
    assert isinstance(chat, ChatService)
    assert chat.server_name == "x"
    assert chat.limits.burst == 9
    assert chat.clock is reactor
    # SIGHUP is always handled, so `systemctl reload` never kills the daemon.
    assert sum(isinstance(s, ReloadOnHangup) for s in children) == 1
    # The listeners open once the store is ready.
    [gate] = [s for s in children if isinstance(s, AfterStore)]
    listeners = [s for s in gate if isinstance(s, StreamServerEndpointService)]
    assert all(isinstance(s, StreamServerEndpointService) for s in listeners)
    assert [endpoint_port(s) for s in listeners] == [7001, 7002, 7003]
    # Each listener's factory is wrapped in the shared connection admission.
    line1, line2, web = (s.factory.wrappedFactory for s in listeners)
    assert isinstance(line1, LineFactory) and line1 is line2
    assert listeners[0].factory.admission is listeners[2].factory.admission
    assert line1.service is chat
    assert isinstance(web, Site)
    ws_resource = web.resource.children[b"ws"]
    assert ws_resource._factory.service is chat
    assert b"healthz" in web.resource.children
    assert reactor.tcpServers == []  # built, not started


def test_make_service_builds_irc_listeners_behind_admission():
    reactor = MemoryReactorClock()
    top = makeService(parse("--line", "tcp:7001", "--ws", "none", "--irc", "tcp:7667",
                            "--irc", "tcp:7668"), reactor=reactor)
    [gate] = [s for s in top if isinstance(s, AfterStore)]
    listeners = [s for s in gate if isinstance(s, StreamServerEndpointService)]
    assert [endpoint_port(s) for s in listeners] == [7001, 7667, 7668]
    line, irc1, irc2 = listeners
    assert isinstance(irc1.factory.wrappedFactory, IrcFactory)
    assert irc1.factory.wrappedFactory is irc2.factory.wrappedFactory
    # One count for every listener: IRC users share the per-address and total limits.
    assert irc1.factory.admission is line.factory.admission
    assert irc1.factory.wrappedFactory.service is list(top)[0]


def test_send_window_reaches_every_front_ends_sender():
    top = makeService(parse("--line", "tcp:7001", "--ws", "none", "--irc", "tcp:7667",
                            "--send-window", "0.004"), reactor=MemoryReactorClock())
    [gate] = [s for s in top if isinstance(s, AfterStore)]
    line, irc = (s.factory.wrappedFactory for s in gate
                 if isinstance(s, StreamServerEndpointService))
    assert line.flusher is irc.flusher
    assert line.flusher.window == 0.004


def test_make_service_with_front_ends_off():
    top = makeService(parse("--line", "none", "--ws", "none"), reactor=MemoryReactorClock())
    assert [type(s) for s in top] == [ChatService, LagProbe, WhenStopping, ReloadOnHangup,
                                      StopOnTerm, AfterStore, SystemdNotifier]


def test_the_admin_endpoint_listens_before_the_store_is_ready(monkeypatch):
    reactor = MemoryReactorClock()
    top = makeService(parse("--line", "tcp:7001", "--ws", "none",
                            "--admin", "tcp:7100:interface=127.0.0.1"), reactor=reactor)
    load = Deferred()
    monkeypatch.setattr(ChatService, "load", lambda self: load)
    top.startService()
    # /readyz can say "not ready" while the store opens.
    assert [(port, iface) for port, _, _, iface in reactor.tcpServers] == [(7100, "127.0.0.1")]
    load.callback(None)
    assert len(reactor.tcpServers) == 2
    top.stopService()


def test_started_tree_listens_where_told_and_stops_cleanly(monkeypatch):
    reactor = MemoryReactorClock()
    top = makeService(parse("--line", "tcp:7001", "--ws", "tcp:7003:interface=127.0.0.1"),
                      reactor=reactor)
    # The store opens on adbapi threads, which a memory reactor never serves:
    # stand in a store that opened at once (tests/store covers the real ones).
    load = Deferred()
    monkeypatch.setattr(ChatService, "load", lambda self: load)
    top.startService()
    assert reactor.tcpServers == []  # nothing listens before the store is ready
    load.callback(None)
    assert [(port, iface) for port, _, _, iface in reactor.tcpServers] == [
        (7001, ""), (7003, "127.0.0.1")]
    done = []
    top.stopService().addBoth(done.append)
    [results] = done
    assert all(ok for ok, _ in results)
    assert not top.running


def test_plugin_points_at_tap():
    from twisted.plugins.chatd_plugin import chatd

    assert chatd.tapname == "chatd"
    assert chatd.module == "chatd.tap"
    assert chatd.options is Options


def test_once_the_listeners_are_open_start_up_objects_are_frozen_and_full_collections_rare():
    import gc

    from chatd.gctune import FULL_EVERY
    reactor = MemoryReactorClock()
    top = makeService(parse("--line", "tcp:0", "--ws", "none", "--data-dir", "/nonexistent"),
                      reactor=reactor)
    [gate] = [s for s in top if isinstance(s, AfterStore)]
    saved = gc.get_threshold()
    try:
        gate.running = True  # started, as far as _open asks (the store is not opened here)
        gate._open(None)  # what the store's load calls back with
        assert gc.get_threshold() == (saved[0], saved[1], FULL_EVERY)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
