"""Which web pages may open a WebSocket to us (cross-site WebSocket hijacking).

Browsers attach cookies and HTTP credentials to a WebSocket handshake from any
page, and the same-origin policy does not apply to WebSockets: only the
``Origin`` header tells us which site's script is connecting.  By default a
browser may connect only from a page this server served: the Origin's host
and port must be the Host the handshake was sent to, with the matching scheme
(``http`` for ``ws``, ``https`` for ``wss``).  ``--allowed-origin`` adds other
sites.  Programs (chatd.client, websocket-client, bots) send no Origin and are
not affected: the check protects browsers' users, not the server.
"""

from urllib.parse import urlsplit

from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger

DEFAULT_PORTS = {"http": 80, "https": 443}

log = Logger()


def normalise(origin: str) -> tuple | None:
    """``(scheme, host, port)`` of an origin, or None if it is not an http(s) one."""
    try:
        parts = urlsplit(origin.strip())
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
            return None
        return scheme, parts.hostname.lower(), parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        return None


def host_port(host: str, scheme: str) -> tuple | None:
    """``(host, port)`` of a Host header, the port defaulting by ``scheme``."""
    parts = normalise(f"{scheme}://{host}")
    return parts[1:] if parts is not None else None


def names_port(host: str) -> bool:
    try:
        return urlsplit(f"http://{host}").port is not None
    except ValueError:
        return False


class OriginPolicy:
    def __init__(self, allowed=(), trusted_proxies=()):
        self.allowed = set()
        for origin in allowed:
            parts = normalise(origin)
            if parts is None:
                raise ValueError(f"{origin!r} is not an origin like https://chat.example.org")
            self.allowed.add(parts)
        self.trusted_proxies = frozenset(trusted_proxies)

    def permits(self, origin: str | None, host: str | None, scheme: str | None,
                any_port: bool = False) -> bool:
        """Whether a handshake with this Origin, sent to ``host`` over ``scheme``
        (http or https; None when a proxy did not say), may proceed.  With
        ``any_port`` (a proxy that dropped the port from Host) ports are not
        compared."""
        if origin is None:
            return True
        parts = normalise(origin)
        if parts is None:  # "null" (sandboxed frames, file:) and anything odd
            return False
        if parts in self.allowed:
            return True
        if host is None:
            return False
        # Behind a proxy that does not say which scheme: either, same host and port.
        schemes = (scheme,) if scheme is not None else tuple(DEFAULT_PORTS)
        for s in schemes:
            hp = host_port(host, s)
            if hp is None or parts[0] != s or parts[1] != hp[0]:
                continue
            if any_port or parts[2] == hp[1]:
                return True
        return False

    def check(self, request, transport) -> None:
        """Raise ConnectionDeny(403) for a handshake from a page not allowed to connect."""
        origin = request.headers.get("origin")
        if origin is None:
            return
        peer = getattr(transport.getPeer(), "host", None)
        host = request.headers.get("host")
        scheme = "https" if ISSLTransport.providedBy(transport) else "http"
        any_port = False
        if peer in self.trusted_proxies:
            proto = (request.headers.get("x-forwarded-proto") or "").strip().lower()
            scheme = proto if proto in DEFAULT_PORTS else None
            # nginx's "Host $host" drops the port the browser used.
            any_port = host is not None and not names_port(host)
        if not self.permits(origin, host, scheme, any_port):
            log.info("refused a WebSocket from {peer}: origin {origin} not allowed for "
                     "host {host}", peer=peer, origin=origin[:200],
                     host=(request.headers.get("host") or "")[:200])
            raise ConnectionDeny(403, "origin not allowed")
