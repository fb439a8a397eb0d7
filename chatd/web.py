"""The HTTP side: web client at ``/``, WebSocket at ``/ws``, ``/healthz``."""

import json
from importlib.resources import files

from autobahn.twisted.resource import WebSocketResource
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File

WS_PATH = b"ws"


class Health(Resource):
    isLeaf = True

    def __init__(self, service):
        super().__init__()
        self.service = service

    def render_GET(self, request):
        """200 either way: live chat works while the store is down, so a load
        balancer should keep the node; monitoring reads ``store``."""
        request.setHeader(b"content-type", b"application/json")
        store = self.service.store
        store_ok = store is None or store.healthy
        body = {"status": "ok" if store_ok else "degraded",
                "store": "ok" if store_ok else "unavailable",
                "connections": self.service.connections,
                "sessions": len(self.service.sessions), "rooms": len(self.service.rooms)}
        return json.dumps(body).encode()


def make_site(service, ws_factory) -> Site:
    root = File(str(files("chatd") / "static"))
    root.putChild(WS_PATH, WebSocketResource(ws_factory))
    root.putChild(b"healthz", Health(service))
    site = Site(root)
    site.displayTracebacks = False
    return site
