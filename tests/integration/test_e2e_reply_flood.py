"""Replies count against the send queue too, and a dropped client's memory comes back.

An attacker's 40 non-reading clients each asked for a long answer many times
in one go; the answers, produced within one reactor turn, escaped the
send-queue cap (79 MB -> 1.01 GB) and were not returned when they left.
Bounds here are RSS deltas with generous margins, not timings.
"""

import socket
import time

CLIENTS = 40
ASKS = 8000  # /help is about 1.5 KB of answer: 12 MB per client if nothing bounds it


def test_non_reading_clients_asking_for_long_answers_are_dropped_and_freed(start_daemon):
    d = start_daemon("--send-queue", "16384", "--rate", "1000000", "--burst", "1000000",
                     "--max-per-ip", "200", "--connects-per-minute", "1000")
    before = d.rss_kib()
    socks = []
    for _ in range(CLIENTS):
        s = socket.create_connection(("127.0.0.1", d.line_port))
        # A small receive window, as a client far away that does not read.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        socks.append(s)
    d.wait_connections(CLIENTS)
    burst = b"/help\r\n" * ASKS
    for s in socks:
        s.sendall(burst)
    deadline = time.monotonic() + 30
    while d.health()["connections"] > 1 and time.monotonic() < deadline:
        time.sleep(0.2)  # (the health request itself is one connection)
    peak = d.rss_kib()
    assert d.health()["connections"] <= 1, "non-reading clients were not dropped"
    # Held to the cap, the daemon grows by about 1 MB here; before replies were
    # counted it grew by tens of MB (the answers in one turn escaped the cap).
    assert peak - before < 25_000, (before, peak)
    for s in socks:
        s.close()
    # Everyone still works afterwards.
    c = d.line()
    c.expect("Welcome")
    c.send("/nick after")
    c.expect("you are now after")


def _flood_and_expect_drops(d, socks, burst: bytes) -> None:
    before = d.rss_kib()
    d.wait_connections(len(socks))
    for s in socks:
        s.sendall(burst)
    deadline = time.monotonic() + 30
    while d.health()["connections"] > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    peak = d.rss_kib()
    assert d.health()["connections"] <= 1, "non-reading clients were not dropped"
    assert peak - before < 25_000, (before, peak)
    for s in socks:
        s.close()


def _small_window(s: socket.socket) -> socket.socket:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return s


FEW = 10  # clients below: the line test above already shows the scale


def test_non_reading_irc_clients_asking_for_long_answers_are_dropped(start_daemon):
    # The server reads 4 KiB a turn, and 4 KiB of VERSION lines (about 460 bytes of
    # 351 and 005 each) stay under the one-turn hard cap: these replies go to the
    # kernel, whose send buffer (tcp_wmem's maximum, 4 MiB here) takes them until it
    # is full; then the queue's cap and its grace drop the client.  So: more than
    # 4 MiB of answers per client.
    d = start_daemon("--irc", "tcp:0:interface=127.0.0.1", "--send-queue", "16384",
                     "--rate", "1000000", "--burst", "1000000", "--max-per-ip", "200",
                     "--connects-per-minute", "1000")
    socks = [_small_window(socket.create_connection(("127.0.0.1", d.irc_port)))
             for _ in range(3)]
    for i, s in enumerate(socks):
        s.sendall(f"NICK flood{i}\r\nUSER u 0 * :u\r\n".encode())
    _flood_and_expect_drops(d, socks, b"VERSION\r\n" * 20_000)


def test_non_reading_protobuf_clients_asking_for_long_answers_are_dropped(start_daemon):
    import websocket

    from chatd.pbcodec import encode_request

    d = start_daemon("--send-queue", "16384", "--rate", "1000000", "--burst", "1000000",
                     "--max-per-ip", "200", "--connects-per-minute", "1000")
    clients = [websocket.create_connection(
        f"ws://127.0.0.1:{d.ws_port}/ws", subprotocols=["chatd.protobuf.v1"],
        sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)) for _ in range(FEW)]
    for c in clients:
        c.recv()  # hello: the subprotocol is in force
    # One masked frame, repeated: a client may reuse a mask key.
    frame = websocket.ABNF.create_frame(encode_request({"type": "help"}),
                                        websocket.ABNF.OPCODE_BINARY).format()
    _flood_and_expect_drops(d, [c.sock for c in clients], frame * ASKS)
