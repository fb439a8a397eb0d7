"""Backpressure: the bounded output queue alone and under the line protocol."""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatd.outbuf import GRACE, HARD_FACTOR, OutputQueue


class Overflow:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


def make_queue(cap=10):
    transport = StringTransport()
    overflow = Overflow()
    return OutputQueue(transport, cap, overflow), transport, overflow


def test_registers_as_streaming_producer():
    queue, transport, _ = make_queue()
    assert transport.producer is queue
    assert transport.streaming is True


def test_writes_pass_through_until_paused():
    queue, transport, _ = make_queue()
    queue.write(b"one ")
    queue.write(b"two ")
    assert transport.value() == b"one two "
    queue.pauseProducing()
    queue.write(b"three ")
    queue.write(b"four")
    assert transport.value() == b"one two "
    queue.resumeProducing()
    assert transport.value() == b"one two three four"
    queue.write(b"!")
    assert transport.value() == b"one two three four!"


def test_overflow_past_cap_once_and_then_silent():
    queue, transport, overflow = make_queue(cap=10)
    queue.pauseProducing()
    queue.write(b"12345")
    queue.write(b"67890")  # exactly the cap: still fine
    assert overflow.calls == 0
    queue.write(b"x")
    assert overflow.calls == 1
    queue.write(b"more")
    queue.resumeProducing()
    assert overflow.calls == 1
    assert transport.value() == b""


def test_flush_hands_over_queued_output_while_paused():
    queue, transport, _ = make_queue()
    queue.pauseProducing()
    queue.write(b"last words")
    queue.flush()
    assert transport.value() == b"last words"


def test_stop_producing_discards():
    queue, transport, overflow = make_queue()
    queue.pauseProducing()
    queue.write(b"lost")
    queue.stopProducing()
    queue.write(b"also lost")
    assert transport.value() == b""
    assert overflow.calls == 0


# -- through the line protocol ------------------------------------------------------
def slow_room(make_chat, cap=2000):
    chat = make_chat(send_queue=cap, burst=1000, rate=1000.0)
    slow = chat.line("slow", "#r")
    fast = chat.line("fast", "#r")
    talker = chat.line("talker", "#r")
    slow.raw()
    fast.raw()
    return chat, slow, fast, talker


def test_paused_client_gets_everything_in_order_on_resume(make_chat):
    chat, slow, fast, talker = slow_room(make_chat)
    slow.proto.out.pauseProducing()
    talker.send(*[f"message {i}" for i in range(10)])
    assert slow.raw() == b""
    assert len(fast.lines()) == 10
    slow.proto.out.resumeProducing()
    assert slow.lines() == [f"[#r] <talker> message {i}" for i in range(10)]
    assert slow.open


def test_client_that_does_not_read_is_dropped_and_others_are_not(make_chat):
    chat, slow, fast, talker = slow_room(make_chat)
    slow.proto.out.pauseProducing()
    sent = [f"message number {i:03d}" for i in range(200)]
    talker.send(*sent)
    chat.clock.advance(GRACE)  # over the cap and still not reading: dropped
    assert slow.transport.disconnected  # aborted, not politely closed
    assert slow.session not in chat.service.sessions
    got = fast.lines()
    assert [line for line in got if line.startswith("[#r]")] == [
        f"[#r] <talker> {text}" for text in sent]
    assert got.count("* slow quit (send queue exceeded)") == 1
    assert chat.service.rooms.get("#r").members.keys() == {"fast", "talker"}
    talker.send("after the drop")
    assert fast.lines() == ["[#r] <talker> after the drop"]


def test_overflow_in_the_middle_of_a_broadcast_reaches_later_members(make_chat):
    # Several slow members overflow on the same broadcast; everybody after them
    # in the room still receives it.
    chat = make_chat(send_queue=300, burst=1000, rate=1000.0)
    talker = chat.line("talker", "#r")
    slows = [chat.line(f"slow{i}", "#r") for i in range(3)]
    fast = chat.line("fast", "#r")
    for s in slows:
        s.proto.out.pauseProducing()
    fast.raw()
    talker.send(*[f"line {i:02d} " + "x" * 40 for i in range(10)])
    chat.clock.advance(GRACE)
    assert all(s.transport.disconnected for s in slows)
    got = [line for line in fast.lines() if line.startswith("[#r]")]
    assert len(got) == 10
    assert len(chat.service.sessions) + len(chat.service._closing) == 2


def test_members_far_over_the_cap_mid_broadcast_do_not_break_the_loop(make_chat):
    # One message puts three paused members past HARD_FACTOR times their cap in
    # the middle of the room's broadcast loop: the loop finishes for everybody,
    # and they are dropped as the turn ends.
    chat = make_chat(send_queue=10, burst=1000, rate=1000.0)
    talker = chat.line("talker", "#r")
    slows = [chat.line(f"slow{i}", "#r") for i in range(3)]
    fast = chat.line("fast", "#r")
    for s in slows:
        s.proto.out.pauseProducing()
    fast.raw()
    talker.send("y" * (10 * HARD_FACTOR + 50))
    assert talker.lines() and fast.lines()[0].startswith("[#r] <talker> yyy")
    chat.clock.advance(0)
    assert all(s.transport.disconnected for s in slows)
    assert len(chat.service.sessions) + len(chat.service._closing) == 2
    assert fast.lines().count("* slow0 quit (send queue exceeded)") == 1


def test_paused_client_told_why_on_server_drop(make_chat):
    chat, slow, fast, talker = slow_room(make_chat)
    slow.proto.out.pauseProducing()
    talker.send("queued")
    chat.service.drop(slow.session, "server shutting down")
    assert slow.lines() == ["[#r] <talker> queued",
                            "* closing connection: server shutting down"]


def make_clocked_queue(cap=10):
    clock = Clock()
    transport = StringTransport()
    overflow = Overflow()
    return OutputQueue(transport, cap, overflow, clock), transport, overflow, clock


def test_reader_past_cap_in_a_burst_is_kept():
    # Twisted pauses a producer once 64 KiB are buffered in a turn, before it has
    # tried the socket: a burst can put a client that reads past its cap.  If the
    # transport resumes it within the grace, nothing is dropped.
    queue, transport, overflow, clock = make_clocked_queue()
    queue.pauseProducing()
    queue.write(b"a burst longer than the cap")
    clock.advance(GRACE / 2)
    queue.resumeProducing()
    clock.advance(GRACE)
    assert overflow.calls == 0
    assert transport.value() == b"a burst longer than the cap"


def test_client_not_resumed_within_the_grace_is_dropped():
    queue, transport, overflow, clock = make_clocked_queue()
    queue.pauseProducing()
    queue.write(b"a burst longer than the cap")
    clock.advance(GRACE * 0.9)
    assert overflow.calls == 0
    clock.advance(GRACE * 0.1)
    assert overflow.calls == 1
    queue.resumeProducing()
    assert transport.value() == b""


def test_far_past_the_cap_is_dropped_at_once():
    queue, transport, overflow, clock = make_clocked_queue(cap=10)
    queue.pauseProducing()
    queue.write(b"x" * (10 * HARD_FACTOR + 1))
    # Closed at once (nothing more is queued); dropped at the end of this turn,
    # not after the grace.
    assert queue.closed and queue.pending_bytes == 0
    clock.advance(0)
    assert overflow.calls == 1
    assert clock.getDelayedCalls() == []
