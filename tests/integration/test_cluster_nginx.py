"""A real nginx, configured from etc/nginx/, in front of two real nodes: WebSocket
and raw TCP clients are spread over both nodes and chat as one room; the
client's address reaches chatd; a drained node's share goes to the other."""

import json
import socket
import urllib.request

import pytest

from tests.nginxconf import Nginx, cluster_config, free_port

from .clients import LineClient, WSClient
from .cluster import Cluster, cluster_storage, json_client

TOKEN = "nginx-cluster-token-0123456789"
ROOM = "#edge"


@pytest.fixture
def behind_nginx(start_daemon, tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    with cluster_storage() as (db, prefix):
        cluster = Cluster(start_daemon, db, prefix)
        nodes = [cluster.start(name, "--trusted-proxy", "127.0.0.1", "--admin",
                               "tcp:0:interface=127.0.0.1", "--admin-token-file",
                               str(tmp_path / "token"))
                 for name in ("edge-a", "edge-b")]
        work = tmp_path / "nginx"
        work.mkdir()
        http_port, line_port = free_port(), free_port()
        config = cluster_config(work, http_port, line_port,
                                [("127.0.0.1", n.ws_port) for n in nodes],
                                [("127.0.0.1", n.line_port) for n in nodes])
        nginx = Nginx(config)
        try:
            nginx.wait_listening("127.0.0.1", http_port)
            nginx.wait_listening("127.0.0.1", line_port)
            yield nodes, http_port, line_port
        finally:
            nginx.stop()
            for node in nodes:
                node.close_clients()


def admin(node, method, path, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.admin_port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.loads(r.read())


def where(nodes, nick) -> list:
    """The nodes (by index) holding a session named ``nick``, with its address."""
    found = []
    for i, node in enumerate(nodes):
        if node.proc.poll() is None:
            for s in admin(node, "GET", "/api/sessions")["sessions"]:
                if s["nick"] == nick:
                    found.append((i, s["address"]))
    return found


def ws_from(port, source) -> WSClient:
    """A WebSocket client connecting from the address ``source`` (127.0.0.0/8)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                    source_address=(source, 0))
    return WSClient(port, socket=sock)


def test_websocket_and_tcp_clients_spread_over_both_nodes_and_chat(behind_nginx):
    nodes, http_port, line_port = behind_nginx
    alice = ws_from(http_port, "127.0.0.2").login("alice", ROOM)
    bob = ws_from(http_port, "127.0.0.3").login("bob", ROOM)
    carol = json_client(LineClient(line_port))
    dave = json_client(LineClient(line_port))
    for i, client in enumerate((carol, dave)):
        nick = ("carol", "dave")[i]
        assert client.request({"type": "nick", "nick": nick, "id": 1})["type"] == "ack"
        assert client.request({"type": "join", "room": ROOM, "id": 2})["type"] == "ack"
    # least_conn: the second of each kind went to the other node.
    (a_node, a_addr), = where(nodes, "alice")
    (b_node, b_addr), = where(nodes, "bob")
    (c_node, _), = where(nodes, "carol")
    (d_node, _), = where(nodes, "dave")
    assert a_node != b_node and c_node != d_node
    # nginx passed each WebSocket client's own address on (--trusted-proxy).
    assert (a_addr, b_addr) == ("127.0.0.2", "127.0.0.3")
    # One room across both nodes, over both protocols.
    alice.request({"type": "message", "room": ROOM, "text": "through nginx"})
    for client in (bob, carol, dave):
        got = client.expect({"type": "message", "room": ROOM, "text": "through nginx"})
        assert got["from"] == "alice"
    dave.request({"type": "message", "room": ROOM, "text": "raw tcp too", "id": 3})
    for client in (alice, bob, carol):
        client.expect({"type": "message", "room": ROOM, "text": "raw tcp too"})
    who = carol.request({"type": "who", "room": ROOM, "id": 4})
    assert sorted(who["nicks"]) == ["alice", "bob", "carol", "dave"], who


def test_a_drained_node_sends_its_clients_to_the_other(behind_nginx):
    nodes, http_port, _ = behind_nginx
    first = WSClient(http_port).login("first", ROOM)
    (drained, _), = where(nodes, "first")
    other = nodes[1 - drained]
    assert admin(nodes[drained], "POST", "/api/drain", {"over": 0})["draining"] is True
    bye = first.expect({"type": "bye"})
    assert "reconnect" in bye["reason"]
    nodes[drained].wait_for(lambda: nodes[drained].proc.poll() is not None,
                            "the drained node to exit", timeout=10)
    nodes[drained].returncode = nodes[drained].proc.returncode
    # Reconnecting through nginx lands on the node still serving, every time.
    for n in range(3):
        again = WSClient(http_port).login(f"again{n}", ROOM)
        assert [i for i, _ in where(nodes, f"again{n}")] == [nodes.index(other)]
        again.close()
