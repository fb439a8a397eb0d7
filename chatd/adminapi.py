"""The admin HTTP API: the server operators' actions as JSON, for scripts.

A ``twisted.web`` resource tree mounted at ``/api/`` on the admin site::

    GET    /api/sessions                       who is connected
    POST   /api/wall     {"text"}              a notice to everyone
    POST   /api/kill     {"nick", "reason"}    drop a session
    GET    /api/bans                           the server bans in force
    POST   /api/bans     {"target", "duration", "reason"}
    DELETE /api/bans     {"target"} (or ?target=...)
    POST   /api/drain    {"over"}              leave the cluster (chatd.drain)

Every request carries ``Authorization: Bearer TOKEN`` (``--admin-token-file``);
without it, or with a wrong one, the answer is 401 and the attempt is logged.
Answers are the same records a chat client's ack carries (chatd.acks); a
refusal is ``{"error": code, "message": ...}`` with an HTTP status.  The work is
chatd.operators', the same code as the chat commands, acting as ``admin-api``.
"""

import hmac
import json

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from chatd.errors import ChatError
from chatd.store import StoreUnavailable

# Who the operator log names for an action taken through the API.
ACTOR = "admin-api"
# A request body larger than this is refused: every request here is small.
MAX_BODY = 64 * 1024

_STATUS = {"no_such_nick": 404, "no_such_ban": 404, "store_unavailable": 503}

log = Logger()


def _peer(request) -> str:
    return getattr(request.getClientAddress(), "host", "?")


def _write_json(request, status: int, body: dict) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body).encode() + b"\n"


def _error(request, error: ChatError) -> bytes:
    return _refuse(request, _STATUS.get(error.code, 400), error.code, error.message)


def _refuse(request, status: int, code: str, message: str) -> bytes:
    return _write_json(request, status, {"error": code, "message": message})


class _Endpoint(Resource):
    """One path; ``methods`` maps an HTTP method to a handler ``(body, request) ->
    record or Deferred of one``."""

    isLeaf = True

    def __init__(self, api: "AdminAPI", methods: dict):
        super().__init__()
        self.api = api
        self.methods = methods

    def render(self, request):
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("ascii", "replace")
        if not self.api.authorized(request):
            log.warn("admin API: refused {method} {path} from {peer}: bad or missing token",
                     method=method, path=path, peer=_peer(request), code="unauthorized")
            request.setHeader(b"www-authenticate", b'Bearer realm="chatd"')
            return _refuse(request, 401, "unauthorized", "a valid bearer token is needed")
        handler = self.methods.get(method)
        if not self.methods:
            return _refuse(request, 404, "not_found", f"no such API path {path}")
        if handler is None:
            request.setHeader(b"allow", ", ".join(sorted(self.methods)).encode())
            return _refuse(request, 405, "method_not_allowed", f"{method} not allowed here")
        try:
            body = self._body(request)
        except ChatError as e:
            return _error(request, e)
        log.info("admin API: {method} {path} from {peer}", method=method, path=path,
                 peer=_peer(request))
        gone = []
        request.notifyFinish().addErrback(gone.append)  # the client went away first
        d = maybeDeferred(handler, body, request)
        d.addCallback(lambda record: _write_json(request, 200, record.to_dict()))
        d.addErrback(self._failed, request)
        d.addCallback(self._finish, request, gone)
        return NOT_DONE_YET

    @staticmethod
    def _body(request) -> dict:
        raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(raw) > MAX_BODY:
            raise ChatError("bad_request", "the request body is too large")
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeError):
            raise ChatError("bad_request", "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise ChatError("bad_request", "the request body must be a JSON object")
        return body

    @staticmethod
    def _failed(failure, request) -> bytes:
        if failure.check(ChatError):
            return _error(request, failure.value)
        if failure.check(StoreUnavailable):
            return _error(request, ChatError("store_unavailable",
                                             "the store is unavailable; nothing was changed"))
        log.failure("admin API request {path} failed", failure,
                    path=request.path.decode("ascii", "replace"))
        return _refuse(request, 500, "internal", "the server failed; this is a bug")

    @staticmethod
    def _finish(payload: bytes, request, gone) -> None:
        if not gone and not request.finished:
            request.write(payload)
            request.finish()


def _str(body: dict, name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ChatError("missing_argument", f"field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise ChatError("bad_request", f"field {name!r} must be a string")
    return value


class AdminAPI(Resource):
    """``/api/``: its children are the endpoints; the token is checked on each."""

    def __init__(self, service, token: str, drain=None):
        super().__init__()
        if not token:
            raise ValueError("the admin API needs a token")
        self.service = service
        self._token = token.encode()
        ops = service.ops
        self.putChild(b"sessions", _Endpoint(self, {
            "GET": lambda body, req: ops.list_sessions(ACTOR)}))
        self.putChild(b"wall", _Endpoint(self, {
            "POST": lambda body, req: ops.wall(ACTOR, _str(body, "text"))}))
        self.putChild(b"kill", _Endpoint(self, {
            "POST": lambda body, req: ops.kill(ACTOR, _str(body, "nick"),
                                               _str(body, "reason", False) or "")}))
        self.putChild(b"bans", _Endpoint(self, {
            "GET": lambda body, req: ops.list_bans(ACTOR),
            "POST": self._ban,
            "DELETE": self._unban}))
        if drain is not None:
            self.putChild(b"drain", _Endpoint(self, {
                "POST": lambda body, req: drain.start(body.get("over", 0))}))

    def authorized(self, request) -> bool:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(given.strip().encode(), self._token)

    def getChild(self, path, request):
        # Unknown paths answer in JSON too (and still need the token first).
        return _Endpoint(self, {})

    def render(self, request):
        return _Endpoint(self, {}).render(request)

    def _ban(self, body, request):
        duration = body.get("duration")
        if duration is None or duration == "":
            raise ChatError("missing_argument", "field 'duration' is required (0: permanent)")
        return self.service.ops.gban(ACTOR, _str(body, "target"), duration,
                                     _str(body, "reason", False) or "")

    def _unban(self, body, request):
        target = body.get("target")
        if target is None:
            args = request.args.get(b"target")
            target = args[0].decode("utf-8", "replace") if args else None
        return self.service.ops.ungban(ACTOR, _str({"target": target}, "target"))


def make_api(service, token: str, drain=None) -> AdminAPI:
    """The resource to mount at ``/api/`` on the admin site:
    ``root.putChild(b"api", make_api(chat, config["admin-token"]))``."""
    return AdminAPI(service, token, drain)
