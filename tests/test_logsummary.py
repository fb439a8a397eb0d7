"""Per-session log lines: one by one when few, a count in a storm."""

from twisted.internet.task import Clock
from twisted.logger import Logger

from chatd.logsummary import Summarised


def logger():
    seen = []
    return Logger(observer=seen.append), seen


def texts(seen):
    from twisted.logger import formatEvent
    return [formatEvent(e) for e in seen]


def test_few_lines_are_logged_one_by_one():
    log, seen = logger()
    clock = Clock()
    chatter = Summarised(log, clock, interval=10, burst=3)
    for i in range(3):
        chatter.info("session connected", "session connected from {peer}", peer=f"10.0.0.{i}")
    assert clock.getDelayedCalls() == []  # no storm, no timer
    clock.advance(10)
    chatter.info("session connected", "session connected from {peer}", peer="10.0.0.9")
    assert texts(seen) == [f"session connected from 10.0.0.{i}" for i in (0, 1, 2, 9)]


def test_a_storm_is_counted_and_summarised_once_per_interval():
    log, seen = logger()
    clock = Clock()
    chatter = Summarised(log, clock, interval=10, burst=3)
    for i in range(1003):
        chatter.info("session connected", "session connected from {peer}", peer="10.0.0.1")
    chatter.info("resumed", "{nick} resumed", nick="alice")
    assert len(seen) == 4  # three connects and the resume, one by one
    clock.advance(10)
    assert texts(seen)[-1] == ('1,000 more "session connected" in the last 10 s, '
                               "not logged one by one")
    assert seen[-1]["count"] == 1000  # a structured field, for JSON logs
    # A new interval logs one by one again.
    chatter.info("session connected", "session connected from {peer}", peer="10.0.0.2")
    assert texts(seen)[-1] == "session connected from 10.0.0.2"


def test_stop_logs_what_was_counted_and_leaves_no_timer():
    log, seen = logger()
    clock = Clock()
    chatter = Summarised(log, clock, interval=10, burst=1)
    for _ in range(5):
        chatter.info("session closed", "closed", )
    chatter.stop()
    assert texts(seen) == ["closed", '4 more "session closed" in the last 10 s, '
                           "not logged one by one"]
    assert clock.getDelayedCalls() == []


def test_a_storms_last_refusal_count_is_logged_when_the_daemon_stops():
    # The dispatcher counts refusals past the burst; stopping must not lose them.
    from conftest import Chat
    from twisted.internet.testing import MemoryReactorClock

    from chatd.dispatch import Dispatcher
    from chatd.tap import Options, WhenStopping, makeService

    chat = Chat(burst=1000, rate=1000.0)  # no flood: every line is refused on its own
    lines = []
    chat.dispatcher.log = Logger(observer=lines.append)
    client = chat.line("storm")
    client.send(*["/frobnicate"] * 150)  # an unknown command, refused each time
    one_by_one = [e for e in lines if "refused" in e["log_format"]]
    assert 0 < len(one_by_one) < 150
    chat.dispatcher.stop()
    [summary] = [e for e in lines if "not logged one by one" in e["log_format"]]
    assert summary["count"] == 150 - len(one_by_one)
    # And the daemon calls it on the way down, before the chat service stops.
    options = Options()
    options.parseOptions(["--line", "none", "--ws", "none"])
    top = list(makeService(options, reactor=MemoryReactorClock()))
    [stopper] = [s for s in top if isinstance(s, WhenStopping)]
    assert isinstance(stopper.stop.__self__, Dispatcher)
    assert top.index(stopper) > 0  # after the chat service: stopped before it
