"""--send-window: a client gets one send() for everything written within the window.

Real socketpairs stand in for two clients of one room; the reactor is a
MemoryReactorClock, so time moves only when the test says.  What a client would
notice: a lone message still arrives at the end of its turn, while messages
that follow each other closely arrive together, at most the window later.
"""

import pytest
from twisted.internet.testing import MemoryReactorClock

from chatd.fastsend import TurnFlusher
from chatd.outbuf import GRACE, OutputQueue

from .socketpairs import received, server_end

WINDOW = 0.002


@pytest.fixture
def room():
    reactor = MemoryReactorClock()
    flusher = TurnFlusher(reactor, window=WINDOW)
    members, closers = [], []
    for port in (1, 2):
        transport, peer, close = server_end(reactor, port)
        closers.append(close)
        members.append((OutputQueue(transport, 1 << 20, lambda: None, reactor, flusher), peer))
    yield reactor, flusher, members
    for close in closers:
        close()


def broadcast(members, data):
    for queue, _ in members:
        queue.write(data)


def test_a_lone_message_goes_out_at_the_end_of_its_turn(room):
    reactor, _, members = room
    broadcast(members, b"hello\n")
    reactor.advance(0)
    assert [received(peer) for _, peer in members] == [b"hello\n", b"hello\n"]


def test_close_messages_wait_for_the_window_and_go_out_together(room):
    reactor, _, members = room
    broadcast(members, b"one\n")
    reactor.advance(0)  # the first goes out at once
    assert [received(peer) for _, peer in members] == [b"one\n"] * 2
    reactor.advance(WINDOW / 4)
    broadcast(members, b"two\n")
    reactor.advance(0)
    reactor.advance(WINDOW / 4)
    broadcast(members, b"three\n")
    reactor.advance(0)
    # Within the window of the last send: held, not lost.
    assert [received(peer) for _, peer in members] == [b""] * 2
    reactor.advance(WINDOW / 2)  # the window since the first send has passed
    assert [received(peer) for _, peer in members] == [b"two\nthree\n"] * 2
    # Nothing further was written: nothing is pending.
    assert reactor.getDelayedCalls() == []


def test_after_a_quiet_window_the_next_message_is_not_held(room):
    reactor, _, members = room
    broadcast(members, b"one\n")
    reactor.advance(0)
    received(members[0][1]), received(members[1][1])
    reactor.advance(WINDOW * 3)
    broadcast(members, b"later\n")
    reactor.advance(0)
    assert [received(peer) for _, peer in members] == [b"later\n"] * 2


def test_a_member_who_leaves_within_the_window_is_sent_nothing(room):
    reactor, _, members = room
    broadcast(members, b"one\n")
    reactor.advance(0)
    received(members[0][1]), received(members[1][1])
    broadcast(members, b"two\n")
    members[1][0].release()  # the connection went away before the send
    reactor.advance(WINDOW)
    assert received(members[0][1]) == b"two\n"
    assert received(members[1][1]) == b""


def test_flush_before_a_close_does_not_wait_for_the_window(room):
    reactor, _, members = room
    broadcast(members, b"one\n")
    reactor.advance(0)
    received(members[0][1])
    members[0][0].write(b"bye\n")
    members[0][0].flush()
    assert received(members[0][1]) == b"bye\n"


def test_the_window_is_never_negative():
    with pytest.raises(ValueError):
        TurnFlusher(MemoryReactorClock(), window=-0.001)


def test_a_member_who_stops_reading_is_still_dropped_at_its_cap():
    # What a window holds back goes to the same bounded queue: a client that
    # never reads costs its cap, window or not, and is let go.
    reactor = MemoryReactorClock()
    transport, peer, close = server_end(reactor)
    dropped = []
    queue = OutputQueue(transport, 64 * 1024, lambda: dropped.append(True), reactor,
                        TurnFlusher(reactor, window=WINDOW))
    try:
        line = b"x" * 999 + b"\n"
        for _ in range(2000):  # 2 MB over many windows; the peer reads none of it
            queue.write(line)
            reactor.advance(WINDOW / 2)
        reactor.advance(GRACE + WINDOW)
        assert dropped == [True]
        assert (queue.pending, queue.pending_bytes, queue.turn) == ([], 0, None)
    finally:
        close()
