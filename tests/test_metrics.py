"""Metrics and health: counters moved by scripted sessions, on the test's Clock.

Each test builds a chat with its own ``Metrics`` (its own registry) and reads
the registry the way Prometheus would: by sample name and labels.
"""

import json
import re
from pathlib import Path

import pytest
import txaio
import yaml
from conftest import Chat, WSClient
from fakes import InlinePasswords
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport, StringTransportWithDisconnection
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from chatd.admin import make_admin_site
from chatd.admission import Admission, AdmissionFactory, line_refusal
from chatd.dispatch import Dispatcher
from chatd.errors import ChatError
from chatd.events import Notice
from chatd.metrics import ERROR_CODES, LagProbe, Metrics, NoMetrics
from chatd.protocols.line import LineFactory
from chatd.protocols.websocket import ChatWebSocketFactory
from chatd.service import ChatService
from chatd.web import Readiness, make_site

ROOT = Path(__file__).resolve().parent.parent
PEER = IPv4Address("TCP", "10.0.0.9", 40000)


class MeteredChat(Chat):
    """``Chat`` (tests/conftest.py) with a Metrics object handed in as tap.py does."""

    def __init__(self, **limits):
        super().__init__(**limits)
        self.metrics = Metrics(self.clock, process=False)
        self.service = ChatService(self.service.limits, clock=self.clock,  # Chat's defaults
                                   passwords=InlinePasswords(), metrics=self.metrics)
        self.dispatcher = Dispatcher(self.service)
        self.ws_factory = ChatWebSocketFactory(self.service, self.dispatcher,
                                               "ws://localhost:8080/ws")

    def ws(self, **kw) -> WSClient:
        return WSClient(self, self.ws_factory, **kw)

    def value(self, name: str, **labels) -> float:
        v = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v


@pytest.fixture
def metered():
    old_loop = txaio.config.loop
    made = []

    def build(**limits):
        chat = MeteredChat(**limits)
        txaio.config.loop = chat.clock  # Autobahn's timers on the chat's clock
        made.append(chat)
        return chat
    yield build
    txaio.config.loop = old_loop


def delivered(chat) -> tuple:
    return (chat.value("chatd_messages_delivered_total", frontend="line"),
            chat.value("chatd_messages_delivered_total", frontend="websocket"))


# -- a scripted session -------------------------------------------------------------
def test_a_session_of_line_and_websocket_clients_moves_the_counters(metered):
    chat = metered()
    alice = chat.line("alice", "#r")                    # text mode
    bob = chat.line("bob", "#r", json_mode=True)        # JSON lines: still "line"
    carol = chat.ws()
    carol.send({"type": "nick", "nick": "carol"})
    carol.send({"type": "join", "room": "#r"})
    carol.events()
    assert chat.value("chatd_sessions") == 3
    assert chat.value("chatd_rooms") == 1
    # The joins were delivered too: bob's to alice, carol's to alice and bob (line)...
    assert delivered(chat) == (1 + 2 + 2, 1)  # ... and each member's own join

    alice.send("hello all")
    assert chat.value("chatd_messages_received_total", frontend="line") == 1
    assert delivered(chat) == (5 + 2, 1 + 1)
    assert "hello all" in bob.raw().decode()

    carol.send({"type": "message", "room": "#r", "text": "hi"})
    carol.send({"type": "action", "room": "#r", "text": "waves"})
    assert chat.value("chatd_messages_received_total", frontend="websocket") == 2
    assert chat.value("chatd_messages_received_total", frontend="line") == 1
    assert delivered(chat) == (7 + 4, 2 + 2)
    # One fan-out time per broadcast: three joins, three messages.
    assert chat.value("chatd_fanout_seconds_count") == 6

    # A quit reaches each remaining member once: counted per session.
    bob.send_json({"type": "quit"})
    assert delivered(chat) == (11 + 1, 4 + 1)
    assert chat.value("chatd_sessions") == 2
    alice.send("/part")
    carol.send({"type": "part"})
    assert chat.value("chatd_rooms") == 0


def test_errors_are_counted_by_code_and_unknown_codes_as_other(metered):
    chat = metered()
    alice = chat.line("alice")
    alice.send("/frobnicate", "/frobnicate", "hello with no room")
    assert chat.value("chatd_errors_total", code="unknown_command") == 2
    assert chat.value("chatd_errors_total", code="not_in_room") == 1
    chat.metrics.error("made_up_by_someone")
    assert chat.value("chatd_errors_total", code="other") == 1
    # Every known code is a series from the start, at zero.
    assert chat.value("chatd_errors_total", code="banned") == 0
    assert chat.metrics.registry.get_sample_value("chatd_errors_total",
                                                  {"code": "banned"}) == 0


def test_flood_refusals_and_ping_timeouts(metered):
    chat = metered(rate=1, burst=2, ping_interval=30, ping_timeout=60, reconnect_burst=0)
    alice = chat.line("alice")  # the nick took one token
    alice.send("/help", "/help", "/help")
    assert chat.value("chatd_flood_refusals_total") == 2
    assert chat.value("chatd_errors_total", code="flood") == 2
    session = alice.session
    chat.clock.advance(61)
    chat.service.heartbeat()
    assert chat.value("chatd_ping_timeouts_total") == 1
    assert not session.attached


def test_logins_ok_and_failed(metered):
    chat = metered()
    alice = chat.line("alice")
    alice.send("/register a long password")
    bob = chat.line()
    bob.send("/login alice wrong password")
    assert chat.value("chatd_logins_total", result="failed") == 1
    alice.send("/quit")
    bob.send("/login alice a long password")
    chat.clock.advance(10)  # a guessed account's logins are slowed down (--login-delay)
    assert "logged in" in bob.raw().decode()
    assert chat.value("chatd_logins_total", result="ok") == 1
    # Anything else that fails a login (the store down, a throttle) is not "failed".
    chat.metrics.login_result(Failure(ChatError("login_throttled", "wait")))
    assert chat.value("chatd_logins_total", result="failed") == 1


def test_a_client_dropped_for_a_full_send_queue_is_counted(metered):
    chat = metered(send_queue=4096)
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    bob.proto.out.pauseProducing()  # bob stops reading
    for _ in range(100):
        alice.send("x" * 400)
    chat.clock.advance(3)
    assert chat.value("chatd_send_queue_overflows_total") == 1
    assert not bob.session or not bob.session.attached


def test_events_with_nobody_to_deliver_to_are_dropped_deliveries(metered):
    chat = metered()
    chat.service.bus.publish_user("nobody", Notice("hello?"))
    chat.service.bus.publish_room("#gone", Notice("hello?"))
    assert chat.value("chatd_deliveries_dropped_total") == 2


def test_connections_are_counted_per_listener_from_accept(metered):
    chat = metered()
    admission = Admission.from_limits(chat.service.limits)
    admission.metrics = chat.metrics
    factory = AdmissionFactory(LineFactory(chat.service, chat.dispatcher), admission,
                               line_refusal, chat.clock, "line")
    protos = []
    for _ in range(2):
        proto = factory.buildProtocol(PEER)
        proto.makeConnection(StringTransportWithDisconnection(peerAddress=PEER))
        protos.append(proto)
    assert chat.value("chatd_connections", frontend="line") == 2
    assert chat.value("chatd_connections", frontend="websocket") == 0
    protos[0].connectionLost(Failure(ConnectionError()))
    assert chat.value("chatd_connections", frontend="line") == 1


def test_reactor_lag_is_how_late_the_tick_ran(metered):
    chat = metered()
    probe = LagProbe(chat.metrics, chat.clock, interval=1.0)
    probe.startService()
    chat.clock.advance(1.0)
    assert chat.value("chatd_reactor_lag_seconds_count") == 1
    assert chat.value("chatd_reactor_lag_seconds_sum") == 0
    chat.clock.advance(3.5)  # a stall: three ticks were due, the first 2.5 s ago
    assert chat.value("chatd_reactor_lag_seconds_count") == 2
    assert chat.value("chatd_reactor_lag_seconds_sum") == pytest.approx(2.5)
    assert chat.metrics.last_lag == pytest.approx(2.5)
    chat.clock.advance(0.5)  # back on the grid
    assert chat.metrics.last_lag == 0
    probe.stopService()


def test_store_operations_are_timed_on_the_clock(metered):
    chat = metered()
    started = chat.clock.seconds()
    chat.clock.advance(0.02)
    assert chat.metrics.store_operation("rows", started) == "rows"
    failure = Failure(RuntimeError("down"))
    assert chat.metrics.store_operation(failure, started) is failure
    assert chat.value("chatd_store_operation_seconds_count") == 2
    assert chat.value("chatd_store_operation_seconds_sum") == pytest.approx(0.04)
    assert chat.value("chatd_store_failures_total") == 1


# -- bounded labels, a complete no-op ------------------------------------------------
def test_labels_never_name_a_nick_a_room_or_an_address(metered):
    chat = metered()
    for i in range(5):
        chat.line(f"user{i}", f"#room{i}").send("hi", "/frobnicate")
    names = set()
    for family in chat.metrics.registry.collect():
        for sample in family.samples:
            names.update(sample.labels)
    assert names <= {"frontend", "code", "result", "how", "le"}  # how: PRESENCE_HOW


def test_the_no_op_default_has_every_method_metrics_has():
    hooks = {n for n in vars(Metrics) if not n.startswith("_")}
    hooks -= {"exposition"}
    assert hooks <= set(dir(NoMetrics))
    service = ChatService()  # nothing given: counts nothing, needs nothing
    assert isinstance(service.metrics, NoMetrics)


def test_every_error_code_chatd_raises_is_a_known_label():
    raised = set()
    for path in (ROOT / "chatd").rglob("*.py"):
        raised.update(re.findall(r'ChatError\(\s*"([a-z0-9_]+)"', path.read_text()))
    assert raised and raised <= ERROR_CODES, sorted(raised - ERROR_CODES)


def test_two_daemons_in_one_process_do_not_share_a_registry(metered):
    a, b = metered(), metered()
    a.line("alice", "#r").send("hi")
    assert a.value("chatd_messages_received_total", frontend="line") == 1
    assert b.value("chatd_messages_received_total", frontend="line") == 0


# -- served over HTTP ----------------------------------------------------------------
def get(site, path: bytes):
    channel = site.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    channel.makeConnection(transport)
    channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = transport.value().partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    channel.connectionLost(Failure(ConnectionError()))
    return status, head, body


class Listeners:
    opened = False


def test_metrics_healthz_and_readyz_on_the_chat_port(metered):
    chat = metered()
    admission = Admission.from_limits(chat.service.limits)
    listeners = Listeners()
    readiness = Readiness(chat.service.store, listeners)
    site = make_site(chat.service, chat.ws_factory, admission, reactor=chat.clock,
                     metrics=chat.metrics, readiness=readiness)
    chat.line("alice", "#r").send("hi")
    status, head, body = get(site, b"/metrics")
    assert status == 200 and b"text/plain; version=0.0.4" in head
    families = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"chatd_messages_received", "chatd_sessions", "chatd_fanout_seconds"} <= families

    status, _, body = get(site, b"/readyz")  # before the listeners are open
    assert status == 503 and json.loads(body) == {"ready": False, "listeners": "not open",
                                                   "store": "ok"}
    listeners.opened = True
    status, _, body = get(site, b"/readyz")
    assert status == 200 and json.loads(body)["ready"] is True

    store = chat.service.store
    store.healthy = False  # as the SQL store marks itself in an outage
    probes = []
    store.last_mid = lambda: probes.append(Deferred()) or probes[-1]
    status, _, body = get(site, b"/readyz")
    assert status == 503 and json.loads(body)["store"] == "unavailable"
    get(site, b"/readyz")
    assert len(probes) == 1  # asking tries the store once at a time
    status, _, body = get(site, b"/healthz")  # alive all the same
    assert status == 200 and json.loads(body)["status"] == "degraded"
    assert "reactor_lag" in json.loads(body)
    store.healthy = True  # what a read that works does (chatd.store.sql._ok)
    probes[0].callback(7)
    assert get(site, b"/readyz")[0] == 200


def test_the_admin_site_serves_health_and_metrics_and_takes_more_pages(metered):
    chat = metered()
    admission = Admission.from_limits(chat.service.limits)
    admission.admit("10.0.0.1")  # a chat connection; the admin scrape is not one
    api = Resource()
    api.putChild(b"ping", Resource())
    site = make_admin_site(chat.service, chat.metrics, Readiness(chat.service.store),
                           admission, extra={b"api": api}, reactor=chat.clock)
    assert get(site, b"/metrics")[0] == 200
    status, _, body = get(site, b"/healthz")
    assert status == 200 and json.loads(body)["connections"] == 1
    assert get(site, b"/readyz")[0] == 200
    assert b"api" in site.resource.children
    assert get(site, b"/")[0] == 404
    assert get(site, b"/no-such-page")[0] == 404
    assert type(site).__name__ == "AdminSite"  # its log line names it


# -- what etc/ ships refers only to what the daemon exports ---------------------------
def exported_names() -> set:
    """Every sample name a real registry exposes, scraped as Prometheus would."""
    chat = MeteredChat()
    metrics = Metrics(chat.clock)  # with the process collector
    text = metrics.exposition().decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(s.name for s in family.samples)
    return names


NAME = re.compile(r"\b((?:chatd|process)_[a-z_]+)\b")


def referenced_names(text: str) -> set:
    return set(NAME.findall(text))


def test_the_alerting_rules_use_only_exported_metrics():
    rules = yaml.safe_load((ROOT / "etc/prometheus/chatd-rules.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert exprs
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["annotations"]["summary"]
    used = set().union(*(referenced_names(e) for e in exprs))
    assert used and used <= exported_names(), sorted(used - exported_names())


def test_the_dashboard_uses_only_exported_metrics():
    dashboard = json.loads((ROOT / "etc/grafana/chatd-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    assert exprs
    exprs += [v.get("definition", "") for v in dashboard["templating"]["list"]]
    used = set().union(*(referenced_names(e) for e in exprs))
    assert used and used <= exported_names(), sorted(used - exported_names())
