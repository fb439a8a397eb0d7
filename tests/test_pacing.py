"""A reconnect storm: newcomers wait their turn, people already chatting do not.

The pacer's clock is the chat's task.Clock (a reactor turn is one
``advance(TICK)``); its CPU timer is a fake that moves 1 ms each time it is read,
so every newcomer request "costs" 1 ms and a 5 ms slice holds about five.
"""

import json

from chatd import wire
from chatd.dispatch import Dispatcher
from chatd.pacing import Pacer
from tests.fakes import FakeSink

TICK = 0.001


class Ticker:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 0.001
        return self.now


def paced(chat, **kw):
    pacer = Pacer(chat.clock, slice_s=0.005, timer=Ticker(), tick=TICK, **kw)
    chat.dispatcher = Dispatcher(chat.service, pacer=pacer)
    return pacer


class Client:
    def __init__(self, chat, host="10.0.0.1"):
        self.chat = chat
        self.sink = FakeSink(wire.JSONL)
        self.session = chat.service.connect(self.sink, host)
        self.sink.take()

    def send(self, kind, rid, **fields):
        self.chat.dispatcher.handle(self.session, {"type": kind, "id": rid, **fields})

    def answers(self) -> list[tuple]:
        """(type, id, code) of every ack and error received so far, in order."""
        out = []
        for payload in self.sink.payloads:
            for line in payload.decode().split("\r\n")[:-1]:
                e = json.loads(line)
                if e["type"] in ("ack", "error"):
                    out.append((e["type"], e["id"], e.get("code")))
        return out


def turns(chat, n=50):
    for _ in range(n):
        chat.clock.advance(TICK)


def storm(chat, count, room="#storm"):
    newcomers = [Client(chat, host=f"10.1.0.{i % 200 + 1}") for i in range(count)]
    for i, c in enumerate(newcomers):
        c.send("nick", 1, nick=f"new{i}")
        c.send("join", 2, room=room)
        c.send("ping", 3)
    return newcomers


def established(chat):
    old = Client(chat, host="10.2.0.1")
    old.send("nick", 1, nick="old")
    old.send("join", 2, room="#talk")
    turns(chat)
    old.sink.take()
    return old


def test_without_a_storm_a_newcomer_is_answered_at_once(chat):
    pacer = paced(chat)
    c = Client(chat)
    c.send("nick", 1, nick="alice")
    c.send("join", 2, room="#room")
    # No reactor turn has passed: nothing waited.
    assert c.answers() == [("ack", 1, None), ("ack", 2, None)]
    assert pacer.queued == 0


def test_established_sessions_are_answered_before_queued_newcomers(chat):
    paced(chat)
    old = established(chat)
    newcomers = storm(chat, 40)
    waiting = [c for c in newcomers if len(c.answers()) < 3]
    assert len(waiting) > 30  # most of the storm is queued, not run
    old.send("ping", 7)
    old.send("message", 8, room="#talk", text="still here")
    assert old.answers() == [("ack", 7, None), ("ack", 8, None)]  # in this same turn
    assert any(len(c.answers()) < 3 for c in newcomers)  # the storm is still waiting


def test_queued_newcomers_are_all_answered_in_order(chat):
    pacer = paced(chat)
    newcomers = storm(chat, 40)
    turns(chat)
    for c in newcomers:
        assert c.answers() == [("ack", 1, None), ("ack", 2, None), ("ack", 3, None)]
        assert c.session.rooms  # the join took effect
    assert pacer.queued == 0
    assert pacer.high_water > 0


def test_each_turn_runs_a_bounded_slice_of_the_storm(chat):
    paced(chat)
    newcomers = storm(chat, 40)

    def answered():
        return sum(len(c.answers()) for c in newcomers)

    before = answered()
    chat.clock.advance(TICK)
    one_turn = answered() - before
    assert 0 < one_turn < 10  # a 5 ms slice, about 1 ms a request
    turns(chat)
    assert answered() == 120


def test_newcomers_are_served_round_robin(chat):
    paced(chat)
    first = storm(chat, 10)
    late = Client(chat, host="10.3.0.1")
    late.send("nick", 1, nick="late")
    for _ in range(4):
        chat.clock.advance(TICK)
    # The late one is not behind all of the earlier sessions' requests.
    assert late.answers() == [("ack", 1, None)]
    assert any(len(c.answers()) < 3 for c in first)


def test_a_full_queue_answers_busy_at_once(chat):
    pacer = paced(chat, max_queued=10)
    newcomers = storm(chat, 20)
    busy = [a for c in newcomers for a in c.answers() if a[2] == "busy"]
    assert busy  # refused at once, with the request's id
    assert {a[1] for a in busy} <= {1, 2, 3}
    assert pacer.queued <= 10
    turns(chat)
    for c in newcomers:  # every request got exactly one answer
        assert sorted(a[1] for a in c.answers()) == [1, 2, 3]


def test_a_newcomer_gone_while_queued_costs_nothing_more(chat):
    pacer = paced(chat)
    newcomers = storm(chat, 20)
    gone = newcomers[-1]
    assert len(gone.answers()) < 3
    chat.service.disconnected(gone.session, "network")
    answered = len(gone.answers())
    turns(chat)
    assert len(gone.answers()) == answered
    assert pacer.queued == 0
    for c in newcomers[:-1]:
        assert len(c.answers()) == 3


def test_a_line_client_switching_to_json_in_a_storm_is_read_as_json(chat):
    paced(chat)
    storm(chat, 40)  # the budget of this turn is spent
    client = chat.line(fresh=True)
    client.send('/json\n{"type": "nick", "nick": "late", "id": 1}')
    turns(chat)
    acks = [json.loads(line) for line in client.raw().decode().split("\r\n")
            if line.startswith("{")]
    assert [(a["type"], a.get("request")) for a in acks] == [("ack", "json"), ("ack", "nick")]


def test_newcomers_waiting_for_the_store_are_bounded(chat):
    """Their answers (a join's scrollback) come back when the store replies:
    only ``max_inflight`` of them may be waiting at once."""
    from twisted.internet.defer import Deferred

    from chatd import acks

    pacer = paced(chat, max_inflight=3)
    old = established(chat)
    started = []

    def slow_join(session, room, password=None, since=None):
        d = Deferred()
        started.append(d)
        return d

    chat.service.join = slow_join
    newcomers = [Client(chat, host=f"10.1.0.{i + 1}") for i in range(10)]
    for c in newcomers:
        c.send("join", 1, room="#slow")
        c.send("ping", 2)
    turns(chat)
    assert len(started) == 3  # the other seven wait their turn
    assert pacer.queued > 0
    old.send("ping", 9)  # in a room: never held
    assert old.answers() == [("ack", 9, None)]
    while len(started) < 10 or not all(d.called for d in started):
        assert pacer.inflight <= 3
        next(d for d in started if not d.called).callback(acks.EmptyAck())
        turns(chat)
    for c in newcomers:
        assert c.answers() == [("ack", 1, None), ("ack", 2, None)]
    assert pacer.inflight == 0 and pacer.queued == 0


def test_operators_see_the_storm_in_the_metrics(chat):
    from chatd.metrics import Metrics

    metrics = Metrics(chat.clock, process=False)
    pacer = Pacer(chat.clock, slice_s=0.005, timer=Ticker(), tick=TICK, metrics=metrics)
    chat.dispatcher = Dispatcher(chat.service, pacer=pacer)
    storm(chat, 40)

    def sample(name):
        return metrics.registry.get_sample_value(name)

    waiting = sample("chatd_paced_waiting")
    assert waiting == pacer.queued > 0
    assert sample("chatd_paced_requests_total") >= waiting
    turns(chat)
    assert sample("chatd_paced_waiting") == 0
    assert sample("chatd_paced_requests_total") >= waiting


def test_only_a_newcomers_costly_work_is_held(chat):
    """help, ping, rooms... from a newcomer run at once even in a storm (a
    non-reading client flooding /help is still dropped by its send queue);
    behind a held join they wait, in order."""
    paced(chat)
    storm(chat, 40)  # the budget is spent
    c = Client(chat, host="10.4.0.1")
    c.send("help", 1)
    c.send("ping", 2)
    assert c.answers() == [("ack", 1, None), ("ack", 2, None)]
    c.send("nick", 3, nick="costly")
    c.send("ping", 4)
    assert len(c.answers()) == 2  # the nick waits its turn, the ping behind it
    turns(chat)
    assert [a[1] for a in c.answers()] == [1, 2, 3, 4]


def test_a_failing_turn_is_logged_and_the_queue_goes_on(chat):
    from twisted.logger import globalLogPublisher

    pacer = Pacer(chat.clock, slice_s=0.005, timer=Ticker(), tick=TICK)
    a, b = Client(chat, host="10.5.0.1"), Client(chat, host="10.5.0.2")
    ran = []

    def broken():
        raise RuntimeError("a bug")

    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        pacer.add(a.session, broken)
        pacer.add(b.session, lambda: ran.append("b"))
        turns(chat)
        pacer.add(b.session, lambda: ran.append("b again"))
        turns(chat)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert ran == ["b", "b again"]  # the other session was not lost with it
    assert any("log_failure" in e and e["log_failure"].check(RuntimeError) for e in logged)
    assert pacer.queued == 0
