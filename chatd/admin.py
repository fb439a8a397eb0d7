"""The operators' HTTP endpoint (``--admin``): ``/metrics``, ``/healthz``, ``/readyz``.

Its own small site, so metrics and health can be served on an address the
public cannot reach (``tcp:9100:interface=127.0.0.1``), and with ``--ws none``.
Its connections are not counted by chatd.admission: a monitoring scrape never
takes a chat user's place.

More pages (an admin JSON API under ``/api/``) join through ``extra``:
``make_admin_site(..., extra={b"api": ApiResource(...)})``.
"""

from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Site

from chatd.adminapi import MAX_BODY
from chatd.web import DEFAULT_REQUEST_TIMEOUT, harden, health_children


class AdminSite(Site):
    """Named for its log line: "AdminSite starting on PORT" (the chat port's is "Site")."""


class AdminRoot(Resource):
    """Only the named children; anything else is a 404 (no listing, no default page)."""

    def getChild(self, path, request):
        return notFound()

    def render_GET(self, request):
        return notFound().render(request)


def make_admin_site(service, metrics, readiness, admission=None, extra=None,
                    request_timeout: float = DEFAULT_REQUEST_TIMEOUT, reactor=None) -> Site:
    """``extra``: more children by name (bytes), e.g. ``{b"api": resource}``."""
    root = AdminRoot()
    children = health_children(service, admission, metrics, readiness, counts_self=False)
    children.update(extra or {})
    for name, child in children.items():
        root.putChild(name, child)
    # The admin API takes JSON bodies of at most chatd.adminapi.MAX_BODY.
    return harden(AdminSite(root, reactor=reactor), request_timeout, max_body=MAX_BODY)
