"""A real nginx, configured from etc/nginx/, in front of two real nodes: WebSocket
and raw TCP clients are spread over both nodes and chat as one room; the
client's address reaches chatd (X-Forwarded-For on the WebSocket port, a PROXY
header on the line and IRC ports, read by haproxy: listeners); a drained
node's share goes to the other."""

import json
import re
import socket
import urllib.request
from contextlib import contextmanager

import pytest

from tests.nginxconf import Nginx, cluster_config, free_port

from .clients import LineClient, WSClient
from .cluster import Cluster, cluster_storage, json_client
from .irc_clients import IrcClient

TOKEN = "nginx-cluster-token-0123456789"
ROOM = "#edge"
# The nodes' listeners behind nginx's stream ports, as etc/nginx/chatd-cluster-stream.conf
# says; the plain ones the test harness starts stay for its own direct checks.
PROXIED = ["--line", "haproxy:tcp:0:interface=127.0.0.1",
           "--irc", "tcp:0:interface=127.0.0.1", "--irc", "haproxy:tcp:0:interface=127.0.0.1"]


def proxied_port(node, factory: str) -> int:
    """The port of ``node``'s haproxy: listener of that front end, from its log."""
    found = re.search(rf"\b{factory} \(PROXY\) starting on (\d+)", node.log())
    assert found, f"no haproxy: {factory} listener\n{node.output()}"
    return int(found.group(1))


@contextmanager
def nginx_in_front(nodes, work):
    """nginx from etc/nginx/ before ``nodes``: (http, line, irc) ports."""
    work.mkdir()
    http_port, line_port, irc_port = free_port(), free_port(), free_port()
    config = cluster_config(
        work, http_port, line_port,
        [("127.0.0.1", n.ws_port) for n in nodes],
        [("127.0.0.1", proxied_port(n, "LineFactory")) for n in nodes],
        irc_port=irc_port,
        irc_nodes=[("127.0.0.1", proxied_port(n, "IrcFactory")) for n in nodes
                   if "--irc" in n.options])
    nginx = Nginx(config)
    try:
        for port in (http_port, line_port, irc_port):
            nginx.wait_listening("127.0.0.1", port)
        yield http_port, line_port, irc_port
    finally:
        nginx.stop()
        for node in nodes:
            node.close_clients()


@pytest.fixture
def behind_nginx(start_daemon, tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    with cluster_storage() as (db, prefix):
        cluster = Cluster(start_daemon, db, prefix)
        nodes = [cluster.start(name, "--trusted-proxy", "127.0.0.1", "--admin",
                               "tcp:0:interface=127.0.0.1", "--admin-token-file",
                               str(tmp_path / "token"), *PROXIED)
                 for name in ("edge-a", "edge-b")]
        with nginx_in_front(nodes, tmp_path / "nginx") as (http_port, line_port, irc_port):
            yield nodes, http_port, line_port, irc_port


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
    nodes, http_port, line_port, irc_port = behind_nginx
    alice = ws_from(http_port, "127.0.0.2").login("alice", ROOM)
    bob = ws_from(http_port, "127.0.0.3").login("bob", ROOM)
    carol = json_client(LineClient(line_port, source="127.0.0.4"))
    dave = json_client(LineClient(line_port, source="127.0.0.5"))
    nodes[0].clients += [carol, dave]
    for i, client in enumerate((carol, dave)):
        nick = ("carol", "dave")[i]
        assert client.request({"type": "nick", "nick": nick, "id": 1})["type"] == "ack"
        assert client.request({"type": "join", "room": ROOM, "id": 2})["type"] == "ack"
    # least_conn: the second of each kind went to the other node.
    (a_node, a_addr), = where(nodes, "alice")
    (b_node, b_addr), = where(nodes, "bob")
    (c_node, c_addr), = where(nodes, "carol")
    (d_node, d_addr), = where(nodes, "dave")
    assert a_node != b_node and c_node != d_node
    # nginx passed each WebSocket client's own address on (--trusted-proxy).
    assert (a_addr, b_addr) == ("127.0.0.2", "127.0.0.3")
    # And each raw TCP client's, in the PROXY header (--line haproxy:...).
    assert (c_addr, d_addr) == ("127.0.0.4", "127.0.0.5")
    # One room across both nodes, over both protocols.
    alice.request({"type": "message", "room": ROOM, "text": "through nginx"})
    for client in (bob, carol, dave):
        got = client.expect({"type": "message", "room": ROOM, "text": "through nginx"})
        assert got["from"] == "alice"
    dave.request({"type": "message", "room": ROOM, "text": "raw tcp too", "id": 3})
    for client in (alice, bob, carol):
        client.expect({"type": "message", "room": ROOM, "text": "raw tcp too"})
    # IRC too (--irc haproxy:...).
    erin = IrcClient(irc_port, source="127.0.0.6")
    nodes[0].clients.append(erin)
    erin.register("erin")
    erin.join(ROOM)
    (_, e_addr), = where(nodes, "erin")
    assert e_addr == "127.0.0.6"
    who = carol.request({"type": "who", "room": ROOM, "id": 4})
    assert sorted(who["nicks"]) == ["alice", "bob", "carol", "dave", "erin"], who
    alice.request({"type": "message", "room": ROOM, "text": "to irc"})
    erin.expect(lambda m: m.command == "PRIVMSG" and m.text == "to irc")


def test_a_drained_node_sends_its_clients_to_the_other(behind_nginx):
    nodes, http_port, *_ = behind_nginx
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


def test_max_per_ip_counts_each_client_behind_nginx_and_only_nginx_may_name_one(
        start_daemon, tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    node = start_daemon("--trusted-proxy", "127.0.0.1", "--max-per-ip", "2", "--admin",
                        "tcp:0:interface=127.0.0.1", "--admin-token-file",
                        str(tmp_path / "token"), *PROXIED[:2])
    with nginx_in_front([node], tmp_path / "nginx") as (_, line_port, _):
        def through_nginx(source):
            client = LineClient(line_port, source=source)
            node.clients.append(client)
            return client
        for client in (through_nginx("127.0.0.4"), through_nginx("127.0.0.4")):
            client.expect("Welcome")
        # Every client reaches chatd from nginx's 127.0.0.1, exempt as a
        # --trusted-proxy: the limit holds only because the header names them.
        third = through_nginx("127.0.0.4")
        third.expect("too_many_from_ip")
        third.expect_closed()
        through_nginx("127.0.0.5").expect("Welcome")
        listed = admin(node, "GET", "/api/sessions")["sessions"]
        assert sorted(s["address"] for s in listed) == ["127.0.0.4", "127.0.0.4", "127.0.0.5"]
        # Straight to the haproxy: port from an address that is not nginx's: a
        # header from it would be a lie, so nothing it sends is read.
        port = proxied_port(node, "LineFactory")
        with socket.create_connection(("127.0.0.1", port), timeout=5,
                                      source_address=("127.0.0.7", 0)) as direct:
            direct.sendall(b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n")
            try:
                assert direct.recv(1024) == b""
            except ConnectionResetError:
                pass  # closed with the header unread: a reset, as it should be
        node.wait_for(lambda: "closed a connection from 127.0.0.7" in node.log(),
                      "the refusal in the log")
        listed = admin(node, "GET", "/api/sessions")["sessions"]
        assert len(listed) == 3 and "192.0.2.1" not in {s["address"] for s in listed}
