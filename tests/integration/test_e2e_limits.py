"""Limits that protect everyone: flooding, connection caps, clients that do not read.

Each test starts a daemon of its own with the limit under test set small.
"""

import pytest
import websocket

from .clients import pump


def test_flooder_is_warned_then_dropped_and_others_carry_on(start_daemon):
    d = start_daemon("--rate", "0.1", "--burst", "5", "--flood-strikes", "10",
                     "--reconnect-burst", "0")
    calm = d.line().login("calm", "#flood")
    loud = d.line().login("loud", "#flood")  # the login spent 2 of loud's 5 tokens
    for i in range(4):
        loud.send(f"spam {i}")
    loud.expect("[#flood] <loud> spam 2")
    assert loud.expect("! error") == "! error flood: too many requests; slow down"
    calm.expect("[#flood] <loud> spam 2")
    # A flooder that keeps going is disconnected; its accepted lines got through.
    loud.send_raw(b"".join(b"spam again %d\r\n" % i for i in range(30)))
    assert "* closing connection: excess flood" in loud.expect_closed()
    calm.expect("* loud quit (excess flood)")
    assert not [line for line in calm.seen if "spam 3" in line or "error" in line]
    calm.send("/who")
    assert calm.expect("present") == "* #flood: 1 present: calm"


def test_connections_per_address_and_in_total(start_daemon):
    d = start_daemon("--max-per-ip", "2", "--max-connections", "4")
    d.wait_connections(0)  # the readiness probe has gone
    first = d.line().login("first", "#cap")
    second = d.ws().login("second", "#cap")

    third = d.line()
    assert third.expect_closed() == [
        "! error too_many_from_ip: too many connections from your address"]
    # The HTTP port refuses at accept, before any WebSocket handshake.
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        d.ws()
    assert refused.value.status_code == 503

    # Other addresses still get in, up to the total.
    others = [d.line(source="127.0.0.2"), d.line(source="127.0.0.2")]
    for c in others:
        c.expect("Welcome")
    late = d.line(source="127.0.0.3")
    assert late.expect_closed() == [
        "! error too_many_connections: the server is full; try again later"]

    # The refused never disturbed the admitted, and a freed slot is reusable.
    first.send("still fine")
    second.expect({"type": "message", "text": "still fine"})
    others[0].close()

    def later():
        # /healthz cannot tell: 127.0.0.1 is at its --max-per-ip, so it gets a 503.
        c = d.line(source="127.0.0.3")
        if "Welcome" in c.read():
            c.backlog.append(c.seen[-1])
            return c
        c.close()
        return None
    d.wait_for(later, "the closed slot to be reusable").login("later", "#cap")
    first.expect("* later joined #cap")


def test_slow_reader_is_dropped_memory_stays_bounded_fast_reader_gets_all(start_daemon):
    d = start_daemon("--send-queue", "65536", "--rate", "100000", "--burst", "100000")
    fast = d.line().login("fast").json_mode()
    sender = d.line().login("sender").json_mode()
    # A tiny receive window, and it never reads again after logging in.
    slow = d.line(rcvbuf=4096).login("slow", "#firehose")
    for c in (fast, sender):
        assert c.request({"type": "join", "room": "#firehose", "id": "j"})["type"] == "ack"
    rss_before = d.rss_kib()

    batch, sent, received, quits = 50, 0, [], []

    def collect():
        for e in fast.drain():
            if e.get("type") == "message":
                received.append(e)
            elif e.get("type") == "quit":
                quits.append(e)
        return len(received) == sent

    def send_batch(text):
        nonlocal sent
        for _ in range(batch):
            sender.send_json({"type": "message", "text": text})
        sent += batch
        for _ in range(batch):
            assert sender.expect({"type": "ack"})["request"] == "message"
        sender.drain()  # its own copies
        pump(fast, until=collect, what=f"fast to receive all {sent} messages", timeout=10)

    # An unbounded queue would never drop slow; 20000 x 1.9 KB is far past any buffer.
    while not quits and sent < 20000:
        send_batch("x" * 1900)
    assert [(q["nick"], q["reason"]) for q in quits] == [("slow", "send queue exceeded")]
    dropped_after = sent
    send_batch("after the drop")  # the room carries on

    mids = [e["mid"] for e in received]
    assert len(received) == sent and mids == sorted(mids) and len(set(mids)) == sent
    rss_after = d.rss_kib()
    # The cap is 64 KiB; keeping what slow was sent would cost megabytes.
    assert rss_after - rss_before < 32 * 1024, (rss_before, rss_after, sent)
    print(f"slow dropped after {dropped_after} messages; VmRSS {rss_before} -> {rss_after} KiB")
    slow.expect_closed()


def test_new_connections_per_address_are_rate_limited_across_reconnects(start_daemon):
    d = start_daemon("--connects-per-minute", "4")
    # (The harness's readiness probe and /healthz are connections too.)
    seen = []
    for _ in range(8):
        c = d.line()
        line = c.read()
        seen.append(line)
        c.close()
        if "too_many_from_ip" in line:
            break
    assert "Welcome" in seen[0]
    assert "too many new connections from your address" in seen[-1]
    # Another address is not affected.
    other = d.line(source="127.0.0.2")
    other.expect("Welcome")
