"""The HTTP side: web client at ``/``, WebSocket at ``/ws``, ``/healthz``.

Every response carries a Content-Security-Policy and the other browser
hardening headers, and no ``Server`` header: nothing here tells a scanner
which versions to try exploits against.  A request head must arrive whole
within ``request_timeout`` seconds (see :class:`HeadDeadlineChannel`).
"""

import json
import re
from importlib.resources import files

from autobahn.twisted.resource import WebSocketResource
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.pages import errorPage, notFound
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.static import File

WS_PATH = b"ws"
DEFAULT_REQUEST_TIMEOUT = 10.0

# The web client is app.js and style.css from this origin, with no inline
# script or style; it talks to /ws on the host it was loaded from.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'{ws}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_HOST = re.compile(rb"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")

SECURITY_HEADERS = {
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
    b"Cross-Origin-Opener-Policy": b"same-origin",
}


def content_security_policy(host: bytes | None) -> bytes:
    """The CSP for a response to a request for ``host``.

    ``connect-src 'self'`` covers ws:/wss: only in browsers implementing CSP
    level 3, so the WebSocket URLs are named too, for a Host that is a plain
    host[:port] (anything else cannot smuggle directives into the header).
    """
    ws = ""
    if host and _HOST.match(host):
        h = host.decode("ascii")
        ws = f" ws://{h} wss://{h}"
    return _CSP.format(ws=ws).encode("ascii")


class HardenedRequest(Request):
    def render(self, resrc):
        # process() has set the defaults by now; no response is written yet.
        self.responseHeaders.removeHeader(b"server")
        for name, value in SECURITY_HEADERS.items():
            self.setHeader(name, value)
        self.setHeader(b"Content-Security-Policy",
                       content_security_policy(self.getHeader(b"host")))
        super().render(resrc)


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


class StaticFiles(File):
    """The web client's files: no directory listings, and a 404 for any name
    the file system cannot even represent (e.g. a NUL byte, ``%00``)."""

    childNotFound = notFound("No such file.")

    def directoryListing(self):
        return self.childNotFound

    def getChild(self, path, request):
        if b"\x00" in path:
            return self.childNotFound
        return super().getChild(path, request)


class WebSocketOnly(WebSocketResource):
    """``/ws``: the upgrade goes to Autobahn; a plain GET gets a short 426
    instead of Autobahn's status page, which names its version."""

    def render(self, request):
        upgrade = request.getHeader(b"upgrade") or b""
        if upgrade.lower() != b"websocket":
            request.setHeader(b"Upgrade", b"websocket")
            return errorPage(426, "Upgrade Required",
                             "This is a WebSocket endpoint.").render(request)
        return super().render(request)


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
    root = StaticFiles(str(files("chatd") / "static"))
    root.putChild(WS_PATH, WebSocketOnly(ws_factory))
    root.putChild(b"healthz", Health(service, admission or getattr(ws_factory, "admission",
                                                                    None)))
    # Not a Site subclass: operators (and the tests) know the listener by the
    # "Site starting on PORT" log line.
    site = Site(root, reactor=reactor)
    site.protocol = HeadDeadlineChannel
    site.requestFactory = HardenedRequest
    site.request_timeout = request_timeout
    site.displayTracebacks = False
    return site
