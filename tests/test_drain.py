"""Draining a node (chatd.drain): listeners close, clients are told to
reconnect spread over the window, and the daemon stops once nobody is left."""

import pytest
from fakes import FakeSink
from twisted.internet.task import Clock

from chatd.drain import REASON, Drain
from chatd.errors import ChatError
from chatd.limits import Limits
from chatd.service import ChatService


class Reactor(Clock):
    stopped = 0

    def stop(self):
        self.stopped += 1


class Listeners:
    stopped = False

    def stopService(self):
        self.stopped = True


@pytest.fixture
def node():
    clock = Reactor()
    chat = ChatService(Limits(), clock=clock)
    listeners = Listeners()
    return chat, listeners, clock, Drain(chat, listeners, clock)


def connect(chat, nick, keep_open=False):
    sink = FakeSink(service=None if keep_open else chat)
    sink.session = chat.connect(sink, "10.0.0.1")
    chat.set_nick(sink.session, nick)
    sink.take()
    return sink


def test_drain_spreads_the_goodbyes_then_stops_when_nobody_is_left(node):
    chat, listeners, clock, drain = node
    sinks = [connect(chat, f"user{i}") for i in range(4)]
    ack = drain.start(over=8)
    assert ack.to_dict() == {"draining": True, "sessions": 4, "over": 8.0}
    assert listeners.stopped  # no new clients from now on
    clock.advance(0)
    closed = [s for s in sinks if s.closed is not None]
    assert len(closed) == 1 and closed[0].closed == REASON
    assert "reconnect" in REASON  # told what to do
    clock.advance(2.1)
    assert len([s for s in sinks if s.closed is not None]) == 2
    assert clock.stopped == 0  # two still here
    clock.advance(4.0)
    assert all(s.closed == REASON for s in sinks)
    clock.advance(0.5)  # the next "anyone left?" check
    assert clock.stopped == 1


def test_drain_stops_early_when_everyone_has_left(node):
    chat, _, clock, drain = node
    sink = connect(chat, "alice")
    drain.start(over=600)
    clock.advance(0)  # the first goodbye is at once
    assert sink.closed == REASON
    clock.advance(1)
    assert clock.stopped == 1
    assert not clock.getDelayedCalls()  # nothing left scheduled


def test_drain_stops_at_the_end_of_the_window_even_if_someone_lingers(node):
    chat, _, clock, drain = node
    connect(chat, "stubborn", keep_open=True)  # never reports its close
    drain.start(over=3)
    clock.advance(3)
    assert clock.stopped == 1  # the shutdown then aborts whoever is still closing


def test_asking_again_changes_nothing_and_bad_windows_are_refused(node):
    chat, _, clock, drain = node
    for bad in (-1, "10", True, 1e9):
        with pytest.raises(ChatError) as refused:
            Drain(chat, Listeners(), clock).start(bad)
        assert refused.value.code == "bad_request"
    connect(chat, "alice", keep_open=True)
    drain.start(over=10)
    assert drain.start(over=0).to_dict() == {"draining": True, "sessions": 1, "over": 10.0}
