"""A real socket for output-path tests: one end a Twisted ``tcp.Server`` on a
MemoryReactorClock (so the transport's own buffered writes happen only when
the test says), the other end the client, read without blocking."""

import socket

from twisted.internet import protocol, tcp


def server_end(reactor, port: int = 1, proto=None):
    """``(transport, peer socket, close)``: a ``tcp.Server`` over one end of a
    socketpair; ``close()`` closes both ends."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    transport = tcp.Server(ours, proto or protocol.Protocol(), ("127.0.0.1", port), None,
                           port, reactor)

    def close():
        peer.close()
        ours.close()
    return transport, peer, close


def received(peer) -> bytes:
    """Everything the peer can read now."""
    out = []
    while True:
        try:
            chunk = peer.recv(1 << 16)
        except BlockingIOError:
            return b"".join(out)
        if not chunk:
            return b"".join(out)
        out.append(chunk)
