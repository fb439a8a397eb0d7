"""The HTTP side: web client at ``/``, WebSocket at ``/ws``, ``/healthz``.

A request head must arrive whole within ``request_timeout`` seconds (see
:class:`HeadDeadlineChannel`).
"""

import json
from importlib.resources import files

from autobahn.twisted.resource import WebSocketResource
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File

WS_PATH = b"ws"
DEFAULT_REQUEST_TIMEOUT = 10.0

class HeadDeadlineChannel(HTTPChannel):
    """An HTTP channel that closes a connection whose request head is too slow.

    twisted.web's idle timeout restarts on every byte, so a client trickling
    one header line at a time (slowloris) would hold the connection forever.
    This deadline runs from accept, and again from the end of each response on
    a kept-alive connection, to the end of the request head (which for /ws is
    the whole WebSocket opening handshake).
    """

    log = Logger()
    _deadline = None

    def connectionMade(self):
        super().connectionMade()
        self._arm()

    def _arm(self):
        self._disarm()
        self._deadline = self.callLater(self.site.request_timeout, self._too_slow)

    def _disarm(self):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self):
        self._deadline = None
        peer = self.transport.getPeer()
        self.log.info("closing {host}: no complete request within {timeout}s",
                      host=getattr(peer, "host", str(peer)), timeout=self.site.request_timeout)
        self.transport.abortConnection()

    def allHeadersReceived(self):
        self._disarm()
        super().allHeadersReceived()

    def requestDone(self, request):
        # Before the base class reads any pipelined request, which may disarm it.
        self._arm()
        super().requestDone(request)

    def connectionLost(self, reason):
        self._disarm()
        super().connectionLost(reason)


class Health(Resource):
    isLeaf = True

    def __init__(self, service, admission=None):
        super().__init__()
        self.service = service
        self.admission = admission

    def render_GET(self, request):
        """200 either way: live chat works while the store is down, so a load
        balancer should keep the node; monitoring reads ``store``."""
        request.setHeader(b"content-type", b"application/json")
        store = self.service.store
        store_ok = store is None or store.healthy
        # Every open connection, counted from accept (see chatd.admission),
        # except the one asking: an idle server reports 0.
        connections = (self.admission.connections - 1 if self.admission is not None
                       else len(self.service.sessions))
        body = {"status": "ok" if store_ok else "degraded",
                "store": "ok" if store_ok else "unavailable",
                "connections": connections,
                "sessions": len(self.service.sessions), "rooms": len(self.service.rooms)}
        return json.dumps(body).encode()


def make_site(service, ws_factory, admission=None,
              request_timeout: float = DEFAULT_REQUEST_TIMEOUT, reactor=None) -> Site:
    root = File(str(files("chatd") / "static"))
    root.putChild(WS_PATH, WebSocketResource(ws_factory))
    root.putChild(b"healthz", Health(service, admission or getattr(ws_factory, "admission",
                                                                    None)))
    # Not a Site subclass: operators (and the tests) know the listener by the
    # "Site starting on PORT" log line.
    site = Site(root, reactor=reactor)
    site.protocol = HeadDeadlineChannel
    site.request_timeout = request_timeout
    site.displayTracebacks = False
    return site
