"""Metrics and health on the real daemon: /metrics on the HTTP port and on --admin,
scraped around a scripted session; /readyz with the store up, cut and back."""

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.pgdb import throwaway_database

from .persist_helpers import ask, jline, ok

ADMIN = ("--admin", "tcp:0:interface=127.0.0.1")
PG_HOST, PG_PORT = "127.0.0.1", 5432


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def scrape(port: int) -> dict:
    """{(sample name, sorted labels): value} from /metrics."""
    status, body = get(port, "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def v(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_on_both_ports_follow_a_scripted_session(start_daemon):
    d = start_daemon(*ADMIN)
    assert d.admin_port and d.admin_port != d.ws_port
    before = scrape(d.admin_port)
    assert v(before, "chatd_sessions") == 0

    tom = d.line().login("tom", "#m")
    wes = d.ws().login("wes", "#m")
    tom.send("hello from the line")
    wes.expect({"type": "message", "text": "hello from the line"})
    wes.request({"type": "message", "text": "hello from the web", "id": 1})
    tom.expect("hello from the web")
    tom.send("/frobnicate")
    tom.expect("! error unknown_command")

    for port in (d.admin_port, d.ws_port):
        after = scrape(port)
        assert v(after, "chatd_sessions") == 2
        assert v(after, "chatd_rooms") == 1
        assert v(after, "chatd_connections", frontend="line") == 1
        # The WebSocket and, on the HTTP port, the scrape itself.
        assert v(after, "chatd_connections", frontend="websocket") == 1 + (port == d.ws_port)
        for fe in ("line", "websocket"):
            assert (v(after, "chatd_messages_received_total", frontend=fe)
                    - v(before, "chatd_messages_received_total", frontend=fe)) == 1
        # Each message reached both members (the joins count too, hence at least).
        assert v(after, "chatd_messages_delivered_total", frontend="line") >= 2
        assert v(after, "chatd_messages_delivered_total", frontend="websocket") >= 2
        assert v(after, "chatd_errors_total", code="unknown_command") == 1
        # Two room messages went through SQLite (and the start-up reads).
        assert v(after, "chatd_store_operation_seconds_count") >= 2
        assert v(after, "chatd_fanout_seconds_count") >= 2
        assert v(after, "process_resident_memory_bytes") > 0

    tom.close()
    wes.close()
    d.wait_connections(0)
    assert v(scrape(d.admin_port), "chatd_sessions") == 0


def test_health_and_readiness_on_both_ports(start_daemon):
    d = start_daemon(*ADMIN)
    for port in (d.ws_port, d.admin_port):
        status, body = get(port, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok" and "reactor_lag" in health
        status, body = get(port, "/readyz")
        assert status == 200 and json.loads(body) == {"ready": True, "listeners": "open",
                                                       "store": "ok"}
    # The admin endpoint does not count its own request as a chat connection.
    assert json.loads(get(d.admin_port, "/healthz")[1])["connections"] == 0
    assert get(d.admin_port, "/")[0] == 404


def test_metrics_with_no_http_front_end(start_daemon):
    d = start_daemon(*ADMIN, "--ws", "none")
    tom = d.line().login("tom", "#m")
    tom.send("hi")
    tom.expect("hi")
    samples = scrape(d.admin_port)
    assert v(samples, "chatd_messages_received_total", frontend="line") == 1
    assert get(d.admin_port, "/readyz")[0] == 200


# -- the store cut: not ready, then ready again -------------------------------------
@pytest.fixture
def pg_db():
    with throwaway_database("chatd_metrics") as name:
        yield name


def test_readyz_is_503_while_the_store_is_cut_and_200_after(pg_db, proxy, start_daemon):
    d = start_daemon(*ADMIN, "--db", f"postgresql://postgres@127.0.0.1:{proxy.port}/{pg_db}",
                     "--store-timeout", "2")
    alice = jline(d, "alice", "#pg")
    ok(alice, type="message", room="#pg", text="stored")
    assert get(d.admin_port, "/readyz")[0] == 200

    proxy.cut()
    assert ask(alice, type="message", room="#pg", text="lost")["code"] == "store_unavailable"
    for port in (d.admin_port, d.ws_port):
        status, body = get(port, "/readyz")
        assert status == 503 and json.loads(body)["store"] == "unavailable"
        assert get(port, "/healthz")[0] == 200  # alive: live chat still works
    assert v(scrape(d.admin_port), "chatd_store_failures_total") >= 1

    proxy.restore()
    # With no traffic at all (a load balancer sends none to a node not ready),
    # asking /readyz is what tries the store again.
    d.wait_for(lambda: get(d.admin_port, "/readyz")[0] == 200, "ready again", timeout=10)
    assert get(d.ws_port, "/readyz")[0] == 200
    ok(alice, type="message", room="#pg", text="back")
