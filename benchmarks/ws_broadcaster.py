"""The ceiling for chatd's WebSocket front end: a bare Autobahn relay.

Every text frame a client sends goes to every other client, nothing else.
``--prepared`` frames each message once (``prepareMessage``) instead of per client.
Usage: python benchmarks/ws_broadcaster.py PORT [--prepared]
"""

import sys

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor


class Relay(WebSocketServerProtocol):
    def onOpen(self):
        self.factory.clients.add(self)

    def onClose(self, wasClean, code, reason):
        self.factory.clients.discard(self)

    def onMessage(self, payload, isBinary):
        if PREPARED:
            payload = self.factory.prepareMessage(payload, isBinary)
        for client in self.factory.clients:
            if client is not self:
                if PREPARED:
                    client.sendPreparedMessage(payload)
                else:
                    client.sendMessage(payload, isBinary)


PREPARED = "--prepared" in sys.argv
factory = WebSocketServerFactory()
factory.protocol = Relay
factory.setProtocolOptions(autoPingInterval=0)
factory.clients = set()
reactor.listenTCP(int(sys.argv[1]), factory, backlog=1024, interface="127.0.0.1")
reactor.run()
