"""Several real daemons as one chat: a PostgreSQL database and a Redis key
prefix of their own per test, removed afterwards (the shared servers are
never stopped or reconfigured).

``Cluster(start_daemon, ...)`` starts nodes; ``NetDaemon`` is a daemon reached
at an address other than 127.0.0.1 (a node in a network namespace).
"""

import json
import socket
import time
import urllib.request
from contextlib import contextmanager

from tests.pgdb import throwaway_database, url_for
from tests.redishelp import REDIS_URL, delete_prefix, unique_prefix

from .clients import LineClient
from .conftest import START_TIMEOUT, Daemon


@contextmanager
def cluster_storage():
    """``(postgresql URL, redis key prefix)`` for one test; both removed afterwards."""
    prefix = unique_prefix()
    with throwaway_database("chatd_cluster") as name:
        try:
            yield url_for(name), prefix
        finally:
            delete_prefix(prefix)


def node_options(db: str, redis: str, prefix: str, node_id: str) -> list:
    return ["--db", db, "--redis", redis, "--redis-prefix", prefix, "--node-id", node_id]


class Cluster:
    """Nodes sharing one database and one Redis prefix."""

    def __init__(self, start_daemon, db: str, prefix: str, redis: str = REDIS_URL):
        self.start_daemon = start_daemon
        self.db, self.prefix, self.redis = db, prefix, redis
        self.nodes = {}

    def start(self, name: str, *options, **kw) -> Daemon:
        d = self.start_daemon(*node_options(self.db, self.redis, self.prefix, name),
                              *options, **kw)
        self.nodes[name] = d
        return d


class NetDaemon(Daemon):
    """A daemon whose ports are reached at ``host`` (not 127.0.0.1), e.g. one run
    in a network namespace with ``wrap=("ip", "netns", "exec", NAME)``."""

    def __init__(self, workdir, options=(), *, host: str, line_port: int, ws_port: int,
                 **kw):
        listen = ["--line", f"tcp:{line_port}:interface={host}",
                  "--ws", f"tcp:{ws_port}:interface={host}"]
        super().__init__(workdir, options, listen=listen, **kw)
        self.host = host

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection((self.host, self.line_port), timeout=2) as s:
                    if s.recv(1024).startswith(b"* Welcome"):
                        self.health()
                        return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chatd does not answer\n{self.output()}") from None
                time.sleep(0.05)

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://{self.host}:{self.ws_port}/healthz",
                                    timeout=5) as r:
            return json.loads(r.read())

    def line(self, **kw) -> LineClient:
        c = LineClient(self.line_port, host=self.host, **kw)
        self.clients.append(c)
        return c


def json_client(client):
    """A line client past the greeting, switched to JSON lines."""
    client.expect("Welcome")
    return client.json_mode()


def messages(events, room: str) -> list:
    """The message events of ``room`` among ``events`` (JSON dicts)."""
    return [e for e in events if isinstance(e, dict) and e.get("type") == "message"
            and e.get("room") == room]
