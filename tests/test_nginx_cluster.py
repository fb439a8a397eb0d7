"""etc/nginx/: the cluster configuration is valid nginx and says what the
cluster needs (the real proxying, PROXY headers included, is
tests/integration/test_cluster_nginx.py)."""

import re

from chatd.limits import Limits
from tests.nginxconf import HTTP_CONF, STREAM_CONF, check, cluster_config

HTTP = HTTP_CONF.read_text(encoding="utf-8")
STREAM = STREAM_CONF.read_text(encoding="utf-8")


def test_nginx_accepts_the_shipped_cluster_configuration(tmp_path):
    result = check(cluster_config(tmp_path, 18080, 19000))
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_accepts_it_with_the_nodes_replaced(tmp_path):
    nodes = [("127.0.0.1", 7001), ("127.0.0.1", 7002), ("127.0.0.1", 7003)]
    config = cluster_config(tmp_path, 18080, 19000, nodes, nodes)
    assert check(config).returncode == 0
    written = (tmp_path / "chatd-cluster.conf").read_text()
    assert written.count("server 127.0.0.1:700") == 3 and "10.0.0.11" not in written


def test_websocket_location_upgrades_and_outlasts_the_heartbeat():
    location = HTTP.split("location = /ws {", 1)[1].split("}", 1)[0]
    assert "proxy_http_version 1.1;" in location
    assert "proxy_set_header Upgrade $http_upgrade;" in location
    assert "proxy_set_header Connection $chatd_connection;" in location
    # The address chatd's --trusted-proxy reads.
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in location
    for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
        seconds = int(re.search(rf"{timeout} (\d+)s;", location).group(1))
        assert seconds > Limits().ping_timeout, timeout


def stream_servers() -> dict:
    """The stream config's server blocks, by the upstream they pass to."""
    blocks = re.findall(r"^server \{\n(.*?)^\}", STREAM, re.M | re.S)
    return {re.search(r"proxy_pass (\w+);", b).group(1): b for b in blocks}


def test_every_port_balances_over_several_nodes():
    http_up = HTTP.split("upstream chatd_nodes {", 1)[1].split("}", 1)[0]
    upstreams = [http_up] + [STREAM.split(f"upstream {name} {{", 1)[1].split("}", 1)[0]
                             for name in ("chatd_line_nodes", "chatd_irc_nodes")]
    for upstream in upstreams:
        assert "least_conn;" in upstream
        assert len(re.findall(r"^\s*server \S+ ", upstream, re.M)) >= 2
    servers = stream_servers()
    assert sorted(servers) == ["chatd_irc_nodes", "chatd_line_nodes"]
    for block in servers.values():
        seconds = int(re.search(r"proxy_timeout (\d+)s;", block).group(1))
        assert seconds > Limits().ping_timeout


def test_the_raw_tcp_ports_pass_the_client_address_to_haproxy_listeners():
    # The nodes' --line/--irc haproxy:... read the header nginx sends first;
    # the comment says which chatd options go with it.
    for block in stream_servers().values():
        assert "proxy_protocol on;" in block
    for option in ("--line haproxy:tcp:9000", "--irc haproxy:tcp:6667", "--trusted-proxy"):
        assert option in STREAM


def test_nginx_accepts_it_with_the_irc_port_replaced(tmp_path):
    nodes = [("127.0.0.1", 7001), ("127.0.0.1", 7002)]
    config = cluster_config(tmp_path, 18080, 19000, irc_port=16667, irc_nodes=nodes)
    assert check(config).returncode == 0
    written = (tmp_path / "chatd-cluster-stream.conf").read_text()
    assert "listen 127.0.0.1:16667;" in written and "10.0.0.11:6667" not in written
    assert "server 127.0.0.1:7002 " in written
