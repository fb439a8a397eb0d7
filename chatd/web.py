"""The HTTP side: web client at ``/``, WebSocket at ``/ws``, IRC over WebSocket
at ``/irc`` (chatd.protocols.ircws), ``/healthz``,
``/readyz`` and ``/metrics`` (the last three also on ``--admin``: chatd.admin).

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

from chatd.metrics import CONTENT_TYPE

WS_PATH = b"ws"
IRC_PATH = b"irc"
METRICS_CONTENT_TYPE = CONTENT_TYPE.encode("ascii")
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
    _body_bytes = 0

    def handleContentChunk(self, data):
        # twisted.web spools a body of any size to a temporary file; nothing we
        # serve takes more than site.max_body, so a larger one is cut off.
        self._body_bytes += len(data)
        if self._body_bytes > self.channel.site.max_body:
            self.channel.transport.abortConnection()
            return
        super().handleContentChunk(data)

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
    a kept-alive connection, to the end of the whole request, body included
    (for /ws: the WebSocket opening handshake), so a body cannot be trickled
    either.
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

    def allContentReceived(self):
        self._disarm()
        super().allContentReceived()

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
    """``/healthz``: alive.  It answering at all says the reactor is responsive."""

    isLeaf = True

    def __init__(self, service, admission=None, metrics=None, counts_self=True, link=None):
        super().__init__()
        self.service = service
        self.link = link  # with --redis: the link to the other nodes
        self.admission = admission
        self.metrics = metrics
        # Whether the asking connection is itself counted (the chat port; not --admin).
        self.counts_self = counts_self

    def render_GET(self, request):
        """200 either way: live chat works while the store is down, so a load
        balancer should keep the node; monitoring reads ``store``."""
        request.setHeader(b"content-type", b"application/json")
        store = self.service.store
        store_ok = store is None or store.healthy
        # Every open connection, counted from accept (see chatd.admission),
        # except the one asking: an idle server reports 0.
        connections = (self.admission.connections - self.counts_self
                       if self.admission is not None else len(self.service.sessions))
        body = {"status": "ok" if store_ok else "degraded",
                "store": "ok" if store_ok else "unavailable",
                "connections": connections,
                "sessions": len(self.service.sessions), "rooms": len(self.service.rooms)}
        if self.link is not None:
            # Local chat goes on without Redis; what needs the cluster is refused.
            body["redis"] = "ok" if self.link.up else "unavailable"
            body["node"] = self.link.node_id
            if not self.link.up:
                body["status"] = "degraded"
        if self.metrics is not None:
            body["reactor_lag"] = round(self.metrics.last_lag, 4)
        return json.dumps(body).encode()


class Ready(Resource):
    """``/readyz``: may a load balancer send new clients here?  200 or 503."""

    isLeaf = True

    def __init__(self, readiness):
        super().__init__()
        self.readiness = readiness

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        body = self.readiness.check()
        if not body["ready"]:
            request.setResponseCode(503)
        return json.dumps(body).encode()


class MetricsPage(Resource):
    """``/metrics``: the daemon's registry in the Prometheus text format."""

    isLeaf = True

    def __init__(self, metrics):
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request):
        request.setHeader(b"content-type", METRICS_CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        return self.metrics.exposition()


class Readiness:
    """Ready: the listeners are open (``listeners.opened``) and the store is healthy.

    The store's health is what its last operation found (chatd.store.sql): an
    idle daemon notices an outage with the next operation that needs the store,
    and while it is marked down each check tries a read (``_probe``).
    """

    def __init__(self, store, listeners=None, link=None):
        self.store = store
        self.listeners = listeners  # anything with ``opened``; None: always open
        # With --redis, the link to the other nodes (chatd.redislink): a node
        # that cannot reach them should get no new clients while others can.
        self.link = link
        self._probing = False

    def check(self) -> dict:
        listening = self.listeners is None or bool(self.listeners.opened)
        store_ok = self.store is None or self.store.healthy
        if not store_ok:
            self._probe()
        body = {"ready": listening and store_ok,
                "listeners": "open" if listening else "not open",
                "store": "ok" if store_ok else "unavailable"}
        if self.link is not None:
            body["redis"] = "ok" if self.link.up else "unavailable"
            body["ready"] = body["ready"] and self.link.up
        return body

    def _probe(self) -> None:
        """A store marked down recovers only through an operation that works, and
        a node the load balancer thinks not ready gets no traffic to try one: so
        each /readyz while it is down tries one cheap read (one at a time; the
        store's own timeout bounds it)."""
        if self._probing:
            return
        self._probing = True
        d = self.store.last_mid()
        d.addErrback(lambda _: None)  # the store has logged it
        d.addBoth(self._probed)

    def _probed(self, _) -> None:
        self._probing = False


def health_children(service, admission=None, metrics=None, readiness=None,
                    counts_self=True) -> dict:
    """``/healthz``, ``/readyz`` and (with metrics) ``/metrics``, by child name."""
    children = {b"healthz": Health(service, admission, metrics, counts_self,
                                   getattr(readiness, "link", None)),
                b"readyz": Ready(readiness or Readiness(service.store))}
    if metrics is not None and metrics.registry is not None:
        children[b"metrics"] = MetricsPage(metrics)
    return children


def harden(site: Site, request_timeout: float, max_body: int = 0) -> Site:
    """The same request deadline, body cap and response headers on every site we
    serve (``max_body``: the largest request body it takes; the chat site, none)."""
    site.protocol = HeadDeadlineChannel
    site.requestFactory = HardenedRequest
    site.request_timeout = request_timeout
    site.max_body = max_body
    site.displayTracebacks = False
    return site


def make_site(service, ws_factory, admission=None,
              request_timeout: float = DEFAULT_REQUEST_TIMEOUT, reactor=None,
              metrics=None, readiness=None, irc_ws_factory=None) -> Site:
    root = StaticFiles(str(files("chatd") / "static"))
    root.putChild(WS_PATH, WebSocketOnly(ws_factory))
    if irc_ws_factory is not None:
        root.putChild(IRC_PATH, WebSocketOnly(irc_ws_factory))
    admission = admission or getattr(ws_factory, "admission", None)
    for name, child in health_children(service, admission, metrics, readiness).items():
        root.putChild(name, child)
    # Not a Site subclass: operators (and the tests) know the listener by the
    # "Site starting on PORT" log line.
    return harden(Site(root, reactor=reactor), request_timeout)
