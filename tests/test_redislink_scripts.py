"""chatd.redislink's scripts: ``run_script`` (EVALSHA, and EVAL when Redis has
lost the script), ``publish_many`` in one call, and scripts loaded on every
(re)connect before the link is up.  In memory first (the bytes on the wire),
then against the real Redis (a private server where the script cache is emptied)."""

import pytest
from proxies import Proxy
from redishelp import REDIS_HOST, REDIS_URL, PrivateRedis, RedisTestCase
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatd.redislink import (
    PUBLISH_MANY,
    RedisError,
    RedisLink,
    RedisUnavailable,
    RespProtocol,
    Script,
    _parse,
)

COUNT = Script("return #ARGV")


def commands(transport) -> list:
    """The commands written on a fake connection since the last call, decoded."""
    data, out, pos = transport.value(), [], 0
    transport.clear()
    while pos < len(data):
        args, pos = _parse(data, pos)
        out.append(args)
    return out


def connected(link) -> tuple:
    """The link's two connections on string transports, set up as on a connect;
    (cmd transport, sub transport, cmd protocol)."""
    cmd, sub = RespProtocol(), RespProtocol(on_push=link._pushed)  # noqa: SLF001
    transports = StringTransport(), StringTransport()
    for proto, t in zip((cmd, sub), transports, strict=True):
        proto.makeConnection(t)
    link.running = True
    link._setup(link._generation, cmd, sub)  # noqa: SLF001 (what _connect does once connected)
    return transports[0], transports[1], cmd


def up_link(scripts=()):
    clock = Clock()
    link = RedisLink(clock, REDIS_URL, "p:", "n1")
    for script in scripts:
        link.register_script(script)
    ct, st, cmd = connected(link)
    sent = commands(ct)
    assert sent[0] == [b"SELECT", b"0"]
    # Every registered script is loaded before the link says it is up.
    assert [c[:2] for c in sent[1:]] == [[b"SCRIPT", b"LOAD"]] * (1 + len(scripts))
    assert {c[2].decode() for c in sent[1:]} == {PUBLISH_MANY.source} | {
        s.source for s in scripts}
    assert not link.up
    cmd.dataReceived(b"+OK\r\n" + b"".join(
        b"$40\r\n" + Script(c[2].decode()).sha.encode() + b"\r\n" for c in sent[1:]))
    assert link.up
    return link, ct, cmd, clock


def test_scripts_are_loaded_before_the_link_is_up_and_run_by_sha():
    link, ct, cmd, _ = up_link([COUNT])
    d = link.run_script(COUNT, [link.key("k")], ["a", 2])  # keys: full names, as in command()
    assert commands(ct) == [[b"EVALSHA", COUNT.sha.encode(), b"1", b"p:k", b"a", b"2"]]
    cmd.dataReceived(b":2\r\n")
    assert d.result == 2


def test_publish_many_is_one_command_whatever_the_number_of_channels():
    link, ct, cmd, _ = up_link()
    d = link.publish_many(["room:#a", "room:#b", "room:#c"], b"payload")
    assert commands(ct) == [[b"EVALSHA", PUBLISH_MANY.sha.encode(), b"0", b"payload",
                             b"p:room:#a", b"p:room:#b", b"p:room:#c"]]
    cmd.dataReceived(b":4\r\n")
    assert d.result == 4


def test_a_lost_script_is_run_with_eval_and_loaded_again():
    link, ct, cmd, _ = up_link()
    d = link.publish_many(["a", "b"], b"x")
    commands(ct)
    cmd.dataReceived(b"-NOSCRIPT No matching script. Please use EVAL.\r\n")
    # EVAL with the source now, and SCRIPT LOAD for the next call (pipelined:
    # no extra wait for the caller).
    assert commands(ct) == [[b"EVAL", PUBLISH_MANY.source.encode(), b"0", b"x", b"p:a",
                             b"p:b"],
                            [b"SCRIPT", b"LOAD", PUBLISH_MANY.source.encode()]]
    cmd.dataReceived(b":2\r\n$40\r\n" + PUBLISH_MANY.sha.encode() + b"\r\n")
    assert d.result == 2
    link.publish_many(["a"], b"y")
    assert commands(ct)[0][0] == b"EVALSHA"


def test_other_script_errors_fail_the_call_and_a_down_link_fails_at_once():
    link, ct, cmd, _ = up_link([COUNT])
    d = link.run_script(COUNT)
    cmd.dataReceived(b"-ERR Error running script\r\n")
    assert isinstance(d.result.value, RedisError)
    d.addErrback(lambda f: None)
    assert len(commands(ct)) == 1  # no EVAL retry for a script that ran and failed
    link.up = False
    for d in (link.run_script(COUNT), link.publish_many(["a"], b"x")):
        assert isinstance(d.result.value, RedisUnavailable)
        d.addErrback(lambda f: None)


def test_a_script_first_run_unregistered_is_registered_for_the_next_connect():
    link, ct, cmd, _ = up_link()
    other = Script("return 7")
    link.run_script(other)
    sent = commands(ct)
    # Loaded at once (ahead of its EVALSHA on the same connection), and from now on at connect.
    assert sent == [[b"SCRIPT", b"LOAD", b"return 7"], [b"EVALSHA", other.sha.encode(), b"0"]]
    assert other.sha in link._scripts  # noqa: SLF001


def test_a_refused_script_load_does_not_keep_the_link_down():
    clock = Clock()
    link = RedisLink(clock, REDIS_URL, "p:", "n1")
    ct, _, cmd = connected(link)
    commands(ct)
    cmd.dataReceived(b"+OK\r\n-NOPERM this user has no permissions to run 'script'\r\n")
    assert link.up  # EVALSHA then fails NOSCRIPT and EVAL runs it


class ScriptTests(RedisTestCase):
    def link(self, url=REDIS_URL, node="n1"):
        link = RedisLink(reactor, url, self.prefix, node, timeout=2.0)
        link.startService()
        self.addCleanup(link.stopService)
        return link

    def counted(self, link) -> list:
        """Every command the link sends on its command connection from now on."""
        sent = []
        proto = link._cmd  # noqa: SLF001 (the connection, to count round trips)
        request = proto.request
        proto.request = lambda args: sent.append(args[0]) or request(args)
        return sent

    def private_redis(self) -> PrivateRedis:
        # SCRIPT FLUSH empties a server's script cache (as a restart does): done
        # on a server of the test's own, not to the shared one's other clients.
        server = PrivateRedis()
        self.addCleanup(server.stop)
        return server

    @inlineCallbacks
    def test_run_script_survives_a_script_flush(self):
        server = self.private_redis()
        link = self.link(url=server.url)
        yield self.until(lambda: link.up, "the link is up")
        script = Script("return {KEYS[1], ARGV[1], 'v1-" + self.prefix + "'}")
        key = link.key("k")
        assert (yield link.run_script(script, [key], ["a"]))[:2] == [key.encode(), b"a"]
        server.command("SCRIPT", "FLUSH")
        sent = self.counted(link)
        assert (yield link.run_script(script, [key], ["b"]))[:2] == [key.encode(), b"b"]
        assert sent == ["EVALSHA", "EVAL", "SCRIPT"]
        assert server.command("SCRIPT", "EXISTS", script.sha) == [1]
        sent.clear()
        assert (yield link.run_script(script, [key], ["c"]))[1] == b"c"
        assert sent == ["EVALSHA"]

    @inlineCallbacks
    def test_publish_many_is_one_round_trip_and_reaches_each_channel(self):
        a, b = self.link(node="a"), self.link(node="b")
        got = []
        for ch in ("room:#1", "room:#2", "room:#3"):
            b.subscribe(ch, lambda data, ch=ch: got.append((ch, data)))
        yield self.until(lambda: a.up and b.up, "both links up")
        yield b.command("PING")
        sent = self.counted(a)
        receivers = yield a.publish_many(["room:#1", "room:#2", "room:#3", "room:#none"],
                                         b"hello")
        assert sent == ["EVALSHA"]  # one command, one answer
        assert receivers == 3
        yield self.until(lambda: len(got) == 3, "three copies")
        assert got == [("room:#1", b"hello"), ("room:#2", b"hello"), ("room:#3", b"hello")]

    @inlineCallbacks
    def test_scripts_are_loaded_again_on_a_reconnect(self):
        server = self.private_redis()
        proxy = Proxy(REDIS_HOST, server.port)
        self.addCleanup(proxy.close)
        link = self.link(url=f"redis://127.0.0.1:{proxy.port}/0")
        yield self.until(lambda: link.up, "the link is up")
        server.command("SCRIPT", "FLUSH")
        proxy.cut()
        yield self.until(lambda: not link.up, "the cut is seen")
        proxy.restore()
        yield self.until(lambda: link.up, "the link is back")
        # Loaded before "up": the first call after the reconnect is one EVALSHA.
        assert server.command("SCRIPT", "EXISTS", PUBLISH_MANY.sha) == [1]
        sent = self.counted(link)
        assert (yield link.publish_many(["x", "y"], b"z")) == 0
        assert sent == ["EVALSHA"]


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
