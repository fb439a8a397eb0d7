"""Two nodes as separate hosts: each in a network namespace of its own with its
own address, Redis on a third host (a redis-server this test starts there),
PostgreSQL reached over that network through a proxy in the root namespace.
Nothing here may depend on every node sharing 127.0.0.1."""

import socket
import subprocess
import time
import uuid
from contextlib import ExitStack

import pytest
from proxies import Proxy

from tests.redishelp import _command

from .cluster import NetDaemon, cluster_storage, json_client, node_options
from .netns import Network, available

ROOM = "#lan"
LINE_PORT, WS_PORT, REDIS_PORT = 9000, 8080, 6379  # the same on every host


def wait_redis(host: str, proc, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, REDIS_PORT), timeout=1) as s:
                if _command(s, "PING") in ("PONG", b"PONG"):
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"redis-server in its namespace did not start "
                                 f"(exit {proc.poll()})")
        time.sleep(0.05)


def redis_clients(host: str) -> str:
    with socket.create_connection((host, REDIS_PORT), timeout=5) as s:
        listing = _command(s, "CLIENT", "LIST")
    return listing.decode() if isinstance(listing, bytes) else listing


@pytest.fixture
def lan(tmp_path):
    why = available()
    if why is not None:
        pytest.skip(f"needs network namespaces (root and `ip netns`): {why}")
    with ExitStack() as stack:
        net = stack.enter_context(Network(["node-a", "node-b", "redis"]))
        db, prefix = stack.enter_context(cluster_storage())
        # PostgreSQL listens on 127.0.0.1 only: the hosts reach it through a
        # proxy listening on the root namespace's address on their network.
        pg = Proxy("127.0.0.1", 5432, listen=net.host_address)
        stack.callback(pg.close)
        name = db.rpartition("/")[2]
        db = f"postgresql://postgres@{net.host_address}:{pg.port}/{name}"
        redis_host = net.address("redis")
        redis = subprocess.Popen(
            [*net.wrap("redis"), "redis-server", "--bind", redis_host, "--port",
             str(REDIS_PORT), "--save", "", "--appendonly", "no", "--protected-mode", "no",
             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(lambda: (redis.terminate(), redis.wait(10)))
        wait_redis(redis_host, redis)
        nodes = {}

        def stop_nodes():
            problems = []
            for host, node in nodes.items():
                if node.stop() != 0 or not node.exited_cleanly():
                    problems.append(f"{host} exited with {node.returncode}\n{node.output()}")
                elif "Traceback" in node.log():
                    problems.append(f"{host} logged a traceback\n{node.output()}")
            assert not problems, "\n".join(problems)
        stack.callback(stop_nodes)
        for host in ("node-a", "node-b"):
            workdir = tmp_path / host
            node = NetDaemon(workdir, node_options(db, f"redis://{redis_host}:{REDIS_PORT}/0",
                                                   prefix, f"{host}-{uuid.uuid4().hex[:4]}"),
                             host=net.address(host), line_port=LINE_PORT, ws_port=WS_PORT,
                             wrap=net.wrap(host))
            nodes[host] = node
            node.start()
        yield net, nodes
        for node in nodes.values():
            node.close_clients()


def test_two_hosts_chat_through_redis_on_a_third(lan):
    net, nodes = lan
    a, b = nodes["node-a"], nodes["node-b"]
    assert (a.host, a.line_port) != (b.host, b.line_port) and a.line_port == b.line_port
    alice = json_client(a.line())
    bob = json_client(b.line())
    for client, nick in ((alice, "alice"), (bob, "bob")):
        assert client.request({"type": "nick", "nick": nick, "id": 1})["type"] == "ack"
        assert client.request({"type": "join", "room": ROOM, "id": 2})["type"] == "ack"
    alice.expect({"type": "join", "room": ROOM, "nick": "bob"})
    # A room message from one host reaches the other ...
    alice.request({"type": "message", "room": ROOM, "text": "hello over the wire", "id": 3})
    got = bob.expect({"type": "message", "room": ROOM, "text": "hello over the wire"})
    assert got["from"] == "alice"
    # ... so does a private message, and each host's /who shows both.
    bob.request({"type": "private", "to": "alice", "text": "psst", "id": 4})
    assert alice.expect({"type": "private", "text": "psst"})["from"] == "bob"
    for client in (alice, bob):
        who = client.request({"type": "who", "room": ROOM, "id": 5})
        assert sorted(who["nicks"]) == ["alice", "bob"], who
    # The nick is taken cluster-wide: bob's host refuses a second alice.
    late = json_client(b.line())
    refused = late.request({"type": "nick", "nick": "ALICE", "id": 6})
    assert refused["type"] == "error" and refused["code"] == "nick_taken", refused
    # Both nodes really are on their own addresses, talking to Redis on another.
    clients = redis_clients(net.address("redis"))
    assert f"addr={a.host}:" in clients and f"addr={b.host}:" in clients, clients
    assert "127.0.0.1" not in clients

