"""The fan-out hot path alone: chatd's output queues over real loopback TCP, in process.

``PYTHONPATH=TREE python benchmarks/hotpath.py [-n 100] [-r 1500] [--stub-send]``

``-n`` members, each with chatd's ``OutputQueue`` and the shared ``TurnFlusher``
on a real accepted TCP connection; ``-r`` messages, each written to every member
in its own reactor turn (the unbatched case), then sent at the end of the turn
as the daemon does.  The members never read (the payloads fit in the socket
buffers).  Prints the process CPU per delivery.  ``--stub-send`` replaces the
socket's ``send`` with one that takes everything, so what remains is chatd's
Python around the system call.  No parsing, store or rendering: this isolates
what changes in chatd/outbuf.py and chatd/fastsend.py cost, without the load
generator's noise (docs/performance.rst).  ``--bare`` is the floor: the same
sends from a plain loop of ``socket.send`` calls, no Twisted, no chatd.
"""

import argparse
import json
import os
import socket
import time

from twisted.internet import protocol, reactor

from chatd.fastsend import TurnFlusher
from chatd.outbuf import OutputQueue

PAYLOAD = b"[#bench0] <someone> " + b"x" * 40 + b"\r\n"


class StubSocket:
    """The real socket, except that ``send`` takes everything without a system call."""

    def __init__(self, real):
        self._real = real

    def send(self, data):
        return len(data)

    def __getattr__(self, name):
        return getattr(self._real, name)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--members", type=int, default=100)
    p.add_argument("-r", "--rounds", type=int, default=1500)
    p.add_argument("--stub-send", action="store_true")
    p.add_argument("--bare", action="store_true")
    args = p.parse_args()
    if args.bare:
        return bare(args)
    flusher = TurnFlusher(reactor)
    writes = []

    class Member(protocol.Protocol):
        def connectionMade(self):
            self.transport.setTcpNoDelay(True)
            queue = OutputQueue(self.transport, 1 << 20, None, reactor, flusher)
            writes.append(queue.write)
            if args.stub_send:
                self.transport.socket = StubSocket(self.transport.socket)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Member), backlog=1024,
                             interface="127.0.0.1")
    clients = [socket.create_connection(("127.0.0.1", port.getHost().port))
               for _ in range(args.members)]
    state = {"round": 0}

    def one_round():
        for write in writes:
            write(PAYLOAD)
        state["round"] += 1
        # callLater(0) from inside a turn runs in the next turn, after this
        # turn's end-of-turn send: each message is alone in its turn.
        reactor.callLater(0, one_round if state["round"] < args.rounds else done)

    def done():
        cpu = time.process_time() - state["cpu"]
        deliveries = args.members * args.rounds
        print(json.dumps({"scenario": "hotpath", "members": args.members,
                          "rounds": args.rounds, "stub_send": args.stub_send,
                          "us_cpu_per_delivery": round(1e6 * cpu / deliveries, 3)}),
              flush=True)
        for c in clients:
            c.close()
        os._exit(0)  # the stubbed sockets would trip the reactor's shutdown

    def start():
        if len(writes) < args.members:
            reactor.callLater(0.05, start)
            return
        state["cpu"] = time.process_time()
        reactor.callLater(0, one_round)

    reactor.callLater(0, start)
    reactor.run()


def bare(args):
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(args.members)]
    members = [listener.accept()[0] for _ in clients]
    for s in members:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
    cpu = time.process_time()
    for _ in range(args.rounds):
        for s in members:
            s.send(PAYLOAD)
    cpu = time.process_time() - cpu
    print(json.dumps({"scenario": "hotpath-bare", "members": args.members,
                      "rounds": args.rounds,
                      "us_cpu_per_delivery": round(1e6 * cpu / (args.members * args.rounds), 3)}))


if __name__ == "__main__":
    main()
