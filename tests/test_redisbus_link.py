"""chatd.redislink against the real Redis server: commands, pub/sub, and an
outage made with a TCP proxy (the shared server is never stopped)."""

import socket

import pytest
from proxies import Proxy
from redishelp import REDIS_HOST, REDIS_PORT, REDIS_URL, RedisTestCase
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks

from chatd.redislink import (
    RedisError,
    RedisLink,
    RedisUnavailable,
    _Incomplete,
    _parse,
    encode_command,
    parse_url,
)


def test_url_forms():
    assert parse_url("redis://127.0.0.1:6379/0") == ("127.0.0.1", 6379, 0, None)
    assert parse_url("redis://:s%40cret@cache/3") == ("cache", 6379, 3, "s@cret")
    for bad in ("http://x/0", "redis:///0", "redis://h:6379/zero"):
        with pytest.raises(ValueError):
            parse_url(bad)
    # The error quotes the URL, never its password (it ends up in logs and terminals).
    for bad in ("redis://:hunter2@cache:port/0", "rediss://user:hunter2@cache/0"):
        with pytest.raises(ValueError) as e:
            parse_url(bad)
        assert "hunter2" not in str(e.value) and "***" in str(e.value)


def test_resp_replies_whole_and_cut():
    wire = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$-1\r\n:42\r\n+OK\r\n-ERR no\r\n"
    value, pos = _parse(wire, 0)
    assert value == [b"message", b"ch", None]
    assert _parse(wire, pos)[0] == 42
    # Every prefix that stops inside a reply says "more", never a wrong value.
    for cut in range(1, pos):
        with pytest.raises(_Incomplete):
            _parse(wire[:cut], 0)
    err, _ = _parse(b"-ERR no\r\n", 0)
    assert isinstance(err, RedisError) and str(err) == "ERR no"
    assert encode_command(("SET", "k", b"\x00v", 3)) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\x00v\r\n$1\r\n3\r\n")


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class LinkTests(RedisTestCase):
    def link(self, url=REDIS_URL, node="n1", timeout=2.0):
        link = RedisLink(reactor, url, self.prefix, node, timeout=timeout)
        link.startService()
        self.addCleanup(link.stopService)
        return link

    @inlineCallbacks
    def test_commands_under_the_prefix(self):
        link = self.link()
        yield self.until(lambda: link.up, "the link is up")
        assert link.key("nick", "alice") == self.prefix + "nick:alice"
        assert (yield link.command("SET", link.key("k"), "v")) == b"OK"
        assert (yield link.command("GET", link.key("k"))) == b"v"
        assert (yield link.command("INCR", link.key("n"))) == 1
        with pytest.raises(RedisError):
            yield link.command("INCR", link.key("k"))  # not a number: Redis says so

    @inlineCallbacks
    def test_publish_reaches_subscribers_in_order(self):
        a, b = self.link(node="a"), self.link(node="b")
        got = []
        b.subscribe("room:#x", got.append)
        yield self.until(lambda: a.up and b.up, "both links up")
        assert b.subscribed() == ["room:#x"]
        for i in range(50):
            a.publish("room:#x", b"m%d" % i)
        yield self.until(lambda: len(got) == 50, "50 messages arrive")
        assert got == [b"m%d" % i for i in range(50)]
        b.unsubscribe("room:#x")
        yield b.command("PING")  # the unsubscribe has been sent before this answer
        receivers = yield a.publish("room:#x", b"late")
        assert receivers == 0 and len(got) == 50

    @inlineCallbacks
    def test_commands_go_straight_to_a_no_delay_socket_and_big_ones_arrive_whole(self):
        import socket as _socket
        link = self.link()
        yield self.until(lambda: link.up, "the link is up")
        for proto in (link._cmd, link._sub):  # noqa: SLF001
            sock = proto.transport.socket
            assert sock.getsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY)
            assert proto._direct is not None  # noqa: SLF001  (no trip through the reactor)
        # Larger than the socket takes at once: the rest goes through the transport,
        # in order, behind what was sent directly.
        big = b"x" * (4 << 20)
        sets = [link.command("SET", link.key(f"big{i}"), big + b"%d" % i) for i in range(3)]
        yield gatherResults(sets)
        for i in range(3):
            assert (yield link.command("GET", link.key(f"big{i}"))) == big + b"%d" % i

    @inlineCallbacks
    def test_unreachable_redis_fails_fast_and_keeps_trying(self):
        link = self.link(url=f"redis://127.0.0.1:{_closed_port()}/0")
        yield self.until(lambda: link.failures >= 2, "two attempts")
        assert not link.up
        with pytest.raises(RedisUnavailable):
            yield link.command("PING")
        with pytest.raises(RedisUnavailable):
            yield link.publish("all", b"x")

    @inlineCallbacks
    def test_cut_and_restored_link_resubscribes_and_tells_listeners(self):
        proxy = Proxy(REDIS_HOST, REDIS_PORT)
        self.addCleanup(proxy.close)
        link = self.link(url=f"redis://127.0.0.1:{proxy.port}/0")
        other = self.link(node="other")
        events = []
        link.add_listener(on_up=lambda: events.append("up"), on_down=lambda: events.append("down"))
        got = []
        link.subscribe("user:bob", got.append)
        yield self.until(lambda: link.up and other.up, "links up")
        assert events == ["up"]
        proxy.cut()
        yield self.until(lambda: not link.up, "the cut is seen")
        assert events == ["up", "down"]
        with pytest.raises(RedisUnavailable):
            yield link.command("GET", link.key("x"))
        proxy.restore()
        yield self.until(lambda: link.up, "the link comes back")
        assert events == ["up", "down", "up"] and link.reconnects == 1
        # Subscribed again before "up" was announced: a publish now arrives.
        yield other.publish("user:bob", b"hello again")
        yield self.until(lambda: got == [b"hello again"], "the message after the outage")

    @inlineCallbacks
    def test_black_holed_link_is_found_by_its_ping(self):
        proxy = Proxy(REDIS_HOST, REDIS_PORT)
        self.addCleanup(proxy.close)
        link = self.link(url=f"redis://127.0.0.1:{proxy.port}/0", timeout=0.5)
        yield self.until(lambda: link.up, "link up")
        proxy.black_hole()
        # No byte moves and no connection closes: only the missing PONG tells.
        yield self.until(lambda: not link.up, "the silent link is declared down")
        d = link.command("PING")
        with pytest.raises(RedisUnavailable):
            yield d
        proxy.forward()
        yield self.until(lambda: link.up, "link back after the black hole")
        assert (yield link.command("PING")) == b"PONG"


def test_reconnect_backoff_doubles_with_jitter_up_to_its_cap():
    """Each failed attempt waits longer (doubling up to BACKOFF_MAX), each wait
    drawn between half and all of it, so nodes cut together do not return in step."""
    from twisted.internet.task import Clock

    from chatd.redislink import BACKOFF_FIRST, BACKOFF_MAX

    clock = Clock()
    link = RedisLink(clock, REDIS_URL, "unused:", "n1")
    attempts = []
    link._connect = lambda: attempts.append(clock.seconds())  # noqa: SLF001 (no sockets)
    link.running = True
    waits = []
    for n in range(30):
        link._down("connection refused")  # noqa: SLF001 (one failed attempt)
        [retry] = clock.getDelayedCalls()
        waits.append(retry.getTime() - clock.seconds())
        full = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** n)
        assert full / 2 <= waits[-1] <= full
        clock.advance(waits[-1])
    assert len(attempts) == 30 and link.failures == 30 and not link.up
    capped = waits[10:]
    assert len(set(capped)) > 1, "jitter: the capped waits are not all equal"
    assert max(capped) <= BACKOFF_MAX


def test_a_turns_commands_leave_in_one_send_in_order(monkeypatch):
    # One segment per reactor turn: a group commit's publishes reach Redis (and
    # the other nodes) together, and no command waits for the next poll.
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from chatd import fastsend
    from chatd.redislink import RespProtocol, encode_command

    sent = []
    monkeypatch.setattr(fastsend, "direct", lambda transport: transport)
    monkeypatch.setattr(fastsend, "send", lambda transport, data: sent.append(data))
    clock = MemoryReactorClock()
    proto = RespProtocol(flusher=fastsend.TurnFlusher(clock))
    proto.makeConnection(StringTransport())
    commands = [("PUBLISH", "room:#a", b"m%d" % i) for i in range(3)]
    replies = [proto.request(c) for c in commands]
    assert sent == []  # not before the end of the turn
    clock.advance(0)
    assert sent == [b"".join(encode_command(c) for c in commands)]
    proto.dataReceived(b":1\r\n:2\r\n:3\r\n")
    assert [r.result for r in replies] == [1, 2, 3]
    # A connection lost before the end of its turn sends nothing more.
    lost = proto.request(("PING",))
    lost.addErrback(lambda f: None)
    proto.connectionLost()
    clock.advance(0)
    assert len(sent) == 1
