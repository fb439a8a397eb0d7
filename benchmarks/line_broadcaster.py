"""The ceiling for chatd's line protocol: a bare Twisted LineReceiver relay.

Every line a client sends goes to every other client, nothing else happens.
Usage: python benchmarks/line_broadcaster.py PORT
"""

import sys

from twisted.internet import protocol, reactor
from twisted.protocols.basic import LineReceiver


class Relay(LineReceiver):
    delimiter = b"\n"

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.factory.clients.add(self)

    def connectionLost(self, reason):
        self.factory.clients.discard(self)

    def lineReceived(self, line):
        data = line + b"\n"
        for client in self.factory.clients:
            if client is not self:
                client.transport.write(data)


factory = protocol.Factory.forProtocol(Relay)
factory.clients = set()
reactor.listenTCP(int(sys.argv[1]), factory, backlog=1024, interface="127.0.0.1")
reactor.run()
