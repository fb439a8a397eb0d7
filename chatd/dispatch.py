"""Requests to service calls: the part every front end shares.

A request is a dict ``{"type": ..., "id": ..., ...}``, whether it came from a
WebSocket frame, a JSON line, or a text command parsed by ``chatd.commands``.
Each request gets exactly one answer, an ``ack`` or an ``error`` carrying its
``id``, except ``pong``, which is itself an answer.

A handler may return a Deferred (anything that waits for the store); its
answer is sent when it fires.  Meanwhile that session's later requests wait
in order behind it, so a client that sends ``join`` and then a message to the
room, without waiting for the ack, still gets what it meant.  The exception is
a run of room messages: they go to the store without waiting for each other's
commit (the store commits them in arrival order, so order and ids hold), which
lets one group commit carry a whole burst instead of one message per sender.
Anything else waits until every message before it is answered.
"""

import json
from collections import deque

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd.commands import HELP_LINES
from chatd.errors import FATAL_CODES, ChatError
from chatd.events import Ack, Error


def _opt_str(req: dict, name: str) -> str | None:
    value = req.get(name)
    if value is not None and not isinstance(value, str):
        raise ChatError("bad_request", f"field {name!r} must be a string")
    return value


def _req_str(req: dict, name: str) -> str:
    value = _opt_str(req, name)
    if value is None or value == "":
        raise ChatError("missing_argument", f"field {name!r} is required")
    return value


def _opt_int(req: dict, name: str) -> int | None:
    """An optional non-negative integer; text mode hands it over as digits."""
    value = req.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ChatError("bad_request", f"field {name!r} must be a non-negative integer")
    return value


# Requests that may be in flight together: the store keeps their order.
PIPELINED = frozenset({"message", "action"})


class _Flow:
    """A session's requests in flight and the ones queued behind them."""

    __slots__ = ("barrier", "inflight", "queue")

    def __init__(self):
        self.inflight = 0
        self.barrier = False  # a request that is not PIPELINED is in flight
        self.queue = deque()

    def admits(self, item) -> bool:
        """May ``item`` run now, beside what is in flight?"""
        return (not self.barrier and not self.queue and isinstance(item, dict)
                and item.get("type") in PIPELINED)


def _then(result, f):
    """``f(result)``, now or when a Deferred result fires."""
    if isinstance(result, Deferred):
        return result.addCallback(f)
    return f(result)


class Dispatcher:
    log = Logger()

    def __init__(self, service):
        self.service = service
        self._flows = {}  # session -> _Flow, while it has a request in flight
        self._handlers = {
            "nick": self.nick,
            "join": self.join,
            "part": self.part,
            "message": self.message,
            "action": self.action,
            "private": self.private,
            "who": self.who,
            "rooms": self.rooms,
            "help": self.help,
            "ping": self.ping,
            "quit": self.quit,
            "history": self.history,
            "register": self.register,
            "login": self.login,
            "password": self.password,
            "topic": self.topic,
            "kick": self.kick,
            "ban": self.ban,
            "unban": self.unban,
            "op": self.op,
            "deop": self.deop,
            "mode": self.mode,
            "invite": self.invite,
        }

    def handle(self, session, req: dict) -> None:
        """Admit, run and answer one parsed request."""
        kind = req.get("type")
        try:
            self.service.admit(session)
        except ChatError as e:
            self._error(session, e, req.get("id"), kind if isinstance(kind, str) else None)
            return
        if kind == "pong":
            return
        flow = self._flows.get(session)
        if flow is None or flow.admits(req):
            self._run(session, req)
        else:
            flow.queue.append(req)

    def in_order(self, session, fn, *args) -> None:
        """Run ``fn(*args)`` now, or once this session's requests in flight are answered
        (the line protocol's ``/json`` switch must not overtake them)."""
        flow = self._flows.get(session)
        if flow is None:
            fn(*args)
        else:
            flow.queue.append((fn, args))

    def _run(self, session, req) -> None:
        if isinstance(req, tuple):
            fn, args = req
            fn(*args)
            return
        rid = req.get("id")
        kind = req.get("type")
        kind = kind if isinstance(kind, str) else None
        try:
            handler = self._handlers.get(kind)
            if handler is None:
                if "type" not in req:
                    raise ChatError("bad_request", 'a request needs a "type"')
                raise ChatError("unknown_type",
                                f"unknown request type {json.dumps(req['type'])[:60]}")
            data = handler(session, req)
        except ChatError as e:
            self._error(session, e, rid, kind)
            return
        except Exception:
            self._internal(None, session, rid, kind)  # None: the exception being handled
            return
        if isinstance(data, Deferred):
            flow = self._flows.get(session)
            if flow is None:
                flow = self._flows[session] = _Flow()
            flow.inflight += 1
            if kind not in PIPELINED:
                flow.barrier = True
            data.addCallbacks(self._answer, self._failed, callbackArgs=(session, kind, rid),
                              errbackArgs=(session, rid, kind))
            data.addErrback(self._internal, session, rid, kind)
            data.addBoth(lambda _: self._settled(session, flow))
        else:
            self._answer(data, session, kind, rid)

    def _answer(self, data, session, kind, rid) -> None:
        if session.attached:
            session.send(Ack(kind, rid, data))
            if kind == "quit":
                self.service.drop(session, data["reason"] or "quit")

    def _failed(self, failure, session, rid, kind) -> None:
        failure.trap(ChatError)
        self._error(session, failure.value, rid, kind)

    def _internal(self, failure, session, rid, kind) -> None:
        self.log.failure("request {kind} from {session} failed", failure, kind=kind,
                         session=session)
        if session.attached:
            self._error(session, ChatError("internal", "the server failed; this is a bug"),
                        rid, kind)

    def _settled(self, session, flow) -> None:
        flow.inflight -= 1
        if flow.inflight:
            return
        if self._flows.get(session) is flow:
            del self._flows[session]
        queue = flow.queue
        # Run what queued behind, until something has to wait again.
        while queue and session.attached:
            current = self._flows.get(session)
            if current is not None and not current.admits(queue[0]):
                current.queue.extend(queue)
                return
            self._run(session, queue.popleft())

    def refuse(self, session, error: ChatError) -> None:
        """Input that never became a request (bad bytes, bad JSON, bad command)."""
        try:
            self.service.admit(session)
        except ChatError as flood:
            error = flood
        self._error(session, error, error.rid, None)

    def _error(self, session, error: ChatError, rid, kind) -> None:
        if session.attached:
            session.send(Error(error.code, error.message, rid, kind))
        if error.code in FATAL_CODES:
            self.service.drop(session, error.message)

    # -- handlers: each returns the ack's data -----------------------------
    def nick(self, session, req):
        return {"nick": self.service.set_nick(session, _req_str(req, "nick"))}

    def join(self, session, req):
        result = self.service.join(session, _req_str(req, "room"), _opt_str(req, "password"),
                                   _opt_int(req, "since"))
        return _then(result, self._joined)

    def _joined(self, result):
        room, more = result if isinstance(result, tuple) else (result, False)
        data = {"room": room.name, "nicks": [s.nick for s in room.members.values()]}
        state = self.service.room_state.get(room.name.lower())
        if state is not None and state.topic:
            data["topic"] = state.topic
        if more:
            data["more"] = True
        return data

    def part(self, session, req):
        room = self.service.part(session, _opt_str(req, "room"), _opt_str(req, "reason") or "")
        return {"room": room.name}

    def message(self, session, req, kind="message"):
        event = self.service.say(session, _opt_str(req, "room"), req.get("text"), kind)
        return _then(event, lambda e: {"room": e.room, "mid": e.mid, "ts": e.ts})

    def action(self, session, req):
        return self.message(session, req, "action")

    def private(self, session, req):
        event = self.service.private(session, _req_str(req, "to"), req.get("text"))
        return _then(event, self._private_data)

    @staticmethod
    def _private_data(event):
        data = {"to": event.to, "mid": event.mid, "ts": event.ts}
        if event.offline:
            data["queued"] = True
        return data

    def who(self, session, req):
        room = self.service.who(session, _opt_str(req, "room"))
        return {"room": room.name, "nicks": [s.nick for s in room.members.values()]}

    def rooms(self, session, req):
        return {"rooms": self.service.room_list()}

    def help(self, session, req):
        return {"lines": HELP_LINES}

    def ping(self, session, req):
        return {}

    def quit(self, session, req):
        return {"reason": _opt_str(req, "reason") or ""}

    # -- persistence: history, accounts, moderation --------------------------
    def history(self, session, req):
        if req.get("before") is not None and req.get("since") is not None:
            raise ChatError("bad_request", "ask for messages before an id or since one, not both")
        return self.service.history(session, _opt_str(req, "room"), _opt_int(req, "before"),
                                    _opt_int(req, "since"), _opt_int(req, "limit"))

    def register(self, session, req):
        return self.service.auth.register(session, req.get("password"))

    def login(self, session, req):
        return self.service.auth.login(session, _req_str(req, "nick"), req.get("password"))

    def password(self, session, req):
        return self.service.auth.password(session, req.get("old"), req.get("new"))

    def topic(self, session, req):
        return self.service.mod.topic(session, _opt_str(req, "room"), _opt_str(req, "topic"))

    def kick(self, session, req):
        return self.service.mod.kick(session, _opt_str(req, "room"), _req_str(req, "nick"),
                                     _opt_str(req, "reason") or "")

    def ban(self, session, req):
        return self.service.mod.ban(session, _opt_str(req, "room"), _req_str(req, "nick"))

    def unban(self, session, req):
        return self.service.mod.ban(session, _opt_str(req, "room"), _req_str(req, "nick"),
                                    banned=False)

    def op(self, session, req):
        return self.service.mod.op(session, _opt_str(req, "room"), _req_str(req, "nick"))

    def deop(self, session, req):
        return self.service.mod.op(session, _opt_str(req, "room"), _req_str(req, "nick"),
                                   grant=False)

    def mode(self, session, req):
        return self.service.mod.mode(session, _opt_str(req, "room"), req.get("invite_only"),
                                     req.get("password"))

    def invite(self, session, req):
        return self.service.mod.invite(session, _opt_str(req, "room"), _req_str(req, "nick"))
