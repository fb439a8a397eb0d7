"""Helpers for tests against the shared Redis server (127.0.0.1:6379): a unique
key prefix per test, and its keys removed afterwards; and a private redis-server
for the few tests that change a server's global state."""

import shutil
import socket
import subprocess
import time
import uuid

from nginxconf import free_port
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


class PrivateRedis:
    """A redis-server of the test's own, on a free port of 127.0.0.1, keeping nothing
    on disk: for what would disturb the shared server's other clients (emptying
    its script cache).  ``stop()`` ends it."""

    def __init__(self):
        exe = shutil.which("redis-server")
        if exe is None:  # scripts/test-setup installs it: its absence is a broken machine
            raise AssertionError("redis-server is not installed (run scripts/test-setup)")
        self.port = free_port(REDIS_HOST)
        self.url = f"redis://{REDIS_HOST}:{self.port}/0"
        self.proc = subprocess.Popen(
            [exe, "--bind", REDIS_HOST, "--port", str(self.port), "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command("PING") in ("PONG", b"PONG"):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def command(self, *args):
        with socket.create_connection((REDIS_HOST, self.port), timeout=5) as s:
            return _command(s, *args)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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
