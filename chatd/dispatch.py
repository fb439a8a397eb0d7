"""Requests to service calls: the part every front end shares.

A request is a dict ``{"type": ..., "id": ..., ...}``, whether it came from a
WebSocket frame, a JSON line, or a text command parsed by ``chatd.commands``.
Each request gets exactly one answer, an ``ack`` or an ``error`` carrying its
``id``, except ``pong``, which is itself an answer.
"""

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


class Dispatcher:
    log = Logger()

    def __init__(self, service):
        self.service = service
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
        }

    def handle(self, session, req: dict) -> None:
        """Admit, run and answer one parsed request."""
        rid = req.get("id")
        kind = req.get("type")
        try:
            self.service.admit(session)
            if kind == "pong":
                return
            handler = self._handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise ChatError("unknown_type", f"unknown request type {kind!r}")
            data = handler(session, req)
        except ChatError as e:
            self._error(session, e, rid, kind if isinstance(kind, str) else None)
            return
        except Exception:
            self.log.failure("request {kind} from {session} failed", kind=kind, session=session)
            self._error(session, ChatError("internal", "the server failed; this is a bug"),
                        rid, kind if isinstance(kind, str) else None)
            return
        if session.attached:
            session.send(Ack(kind, rid, data))
            if kind == "quit":
                self.service.drop(session, data["reason"] or "quit")

    def refuse(self, session, error: ChatError) -> None:
        """Input that never became a request (bad bytes, bad JSON, bad command)."""
        try:
            self.service.admit(session)
        except ChatError as flood:
            error = flood
        self._error(session, error, None, None)

    def _error(self, session, error: ChatError, rid, kind) -> None:
        if session.attached:
            session.send(Error(error.code, error.message, rid, kind))
        if error.code in FATAL_CODES:
            self.service.drop(session, error.message)

    # -- handlers: each returns the ack's data -----------------------------
    def nick(self, session, req):
        return {"nick": self.service.set_nick(session, _req_str(req, "nick"))}

    def join(self, session, req):
        room = self.service.join(session, _req_str(req, "room"))
        return {"room": room.name, "nicks": [s.nick for s in room.members.values()]}

    def part(self, session, req):
        room = self.service.part(session, _opt_str(req, "room"), _opt_str(req, "reason") or "")
        return {"room": room.name}

    def message(self, session, req, kind="message"):
        event = self.service.say(session, _opt_str(req, "room"), req.get("text"), kind)
        return {"room": event.room, "mid": event.mid, "ts": event.ts}

    def action(self, session, req):
        return self.message(session, req, "action")

    def private(self, session, req):
        event = self.service.private(session, _req_str(req, "to"), req.get("text"))
        return {"to": event.to, "mid": event.mid, "ts": event.ts}

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
