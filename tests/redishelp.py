"""Helpers for tests against the shared Redis server (127.0.0.1:6379): a unique
key prefix per test, and its keys removed afterwards."""

import socket
import uuid

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from chatd.redislink import _Incomplete, _parse, encode_command

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def unique_prefix() -> str:
    return f"chatdtest:{uuid.uuid4().hex[:12]}:"


def _command(sock, *args):
    """One command, blocking; its decoded reply."""
    sock.sendall(encode_command(args))
    buf = b""
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        buf += chunk
        try:
            return _parse(buf, 0)[0]
        except _Incomplete:
            continue


def delete_prefix(prefix: str, port: int = REDIS_PORT) -> None:
    """Remove every key under ``prefix`` (blocking; for fixtures and cleanups)."""
    with socket.create_connection((REDIS_HOST, port), timeout=5) as s:
        for key in _command(s, "KEYS", prefix + "*"):
            _command(s, "DEL", key)


def count_keys(prefix: str) -> int:
    with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=5) as s:
        return len(_command(s, "KEYS", prefix + "*"))


class RedisTestCase(TestCase):
    """A fresh key prefix per test (its keys removed afterwards) and bounded waits."""

    timeout = 30

    def setUp(self):
        self.prefix = unique_prefix()
        self.addCleanup(delete_prefix, self.prefix)

    @inlineCallbacks
    def until(self, condition, what, seconds=10.0):
        """Wait, bounded, for ``condition()``; fail saying ``what`` if it never holds."""
        for _ in range(int(seconds / 0.02)):
            if condition():
                return
            yield deferLater(reactor, 0.02, lambda: None)
        self.fail(f"never: {what}")
