"""Requests to service calls: the one request path every front end shares.

A request is a dict ``{"type": ..., "id": ..., ...}``, whether it came from a
WebSocket frame, a JSON line, or a text command parsed by ``chatd.commands``.
Each request gets exactly one answer, an ``ack`` or an ``error`` carrying its
``id``, except ``pong``, which is itself an answer.

Every handler returns a Deferred firing the ack's record (chatd.acks).  One
that has not fired yet (it waits for the store) holds back that session's
later requests, in order, so a client that sends ``join`` and then a message
to the room, without waiting for the ack, still gets what it meant.  The
exception is a run of room messages: they go to the store without waiting
for each other's commit (the store commits them in arrival order, so order
and ids hold), which lets one group commit carry a whole burst.  Anything
else waits until every message before it is answered.

With a ``pacer`` (chatd.pacing), a newcomer's costly request (``PACED``)
may wait its turn before it runs, in a storm of reconnects: the session's order and its one
answer per request hold, and a request the pacer cannot take is answered
``busy`` at once.
"""

import json
from collections import deque

from twisted.internet.defer import succeed
from twisted.logger import Logger

from chatd import acks
from chatd.errors import FATAL_CODES, ChatError
from chatd.events import Ack, Error
from chatd.helptext import HELP_LINES
from chatd.logsummary import Summarised
from chatd.metrics import NO_METRICS
from chatd.store import StoreRejected, StoreUnavailable

# The largest id, count or message id a request may carry: what a 64-bit
# database column holds.  Past it a request is malformed, not a store fault.
MAX_INT = 2**63 - 1


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
    if isinstance(value, str) and value.isdigit() and len(value) <= 19:
        value = int(value)
    if (not isinstance(value, int) or isinstance(value, bool) or value < 0
            or value > MAX_INT):
        raise ChatError("bad_request",
                        f"field {name!r} must be an integer from 0 to {MAX_INT}")
    return value


# Requests that may be in flight together: the store keeps their order.
PIPELINED = frozenset({"message", "action"})
# A newcomer's costly work, which waits its turn in a storm (chatd.pacing);
# its other requests wait only behind these.
PACED = frozenset({"nick", "register", "login", "resume", "join", "history"})


class _Flow:
    """A session's requests in flight and the ones queued behind them."""

    __slots__ = ("barrier", "inflight", "queue")

    def __init__(self):
        self.inflight = 0
        self.barrier = False  # a request that is not PIPELINED is in flight
        self.queue = deque()

    def admits(self, req) -> bool:
        """May ``req`` run now, beside what is in flight?"""
        return not self.barrier and not self.queue and req.get("type") in PIPELINED


def _store_error(failure) -> ChatError:
    if failure.check(StoreRejected):
        return ChatError("store_unavailable", "the store refused this message; nothing was saved")
    return ChatError("store_unavailable",
                     "the message store is unavailable; nothing was saved, try again shortly")


class Dispatcher:
    log = Logger()

    def __init__(self, service, metrics=None, pacer=None):
        self.service = service
        self.pacer = pacer
        self.metrics = metrics if metrics is not None else getattr(service, "metrics",
                                                                   NO_METRICS)
        self._flows = {}  # session -> _Flow, while it has a request in flight
        self._refusals = None  # the refusals' log lines, once the first comes
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
            "json": self.json,
            "history": self.history,
            "register": self.register,
            "login": self.login,
            "resume": self.resume,
            "logout": self.logout,
            "password": self.password,
            "topic": self.topic,
            "kick": self.kick,
            "ban": self.ban,
            "unban": self.unban,
            "op": self.op,
            "deop": self.deop,
            "mode": self.mode,
            "invite": self.invite,
            "away": self.away,
            "keep": self.keep,
            "unkeep": self.unkeep,
            "wall": self.wall,
            "kill": self.kill,
            "gban": self.gban,
            "ungban": self.ungban,
            "gbans": self.gbans,
            "sessions": self.sessions,
        }

    def handle(self, session, req: dict, admitted: bool = False) -> None:
        """Admit, run and answer one parsed request.  ``admitted``: the front end
        has counted the input it came from (an IRC line naming several targets)."""
        kind = req.get("type")
        if not admitted:
            try:
                self.service.admit(session)
            except ChatError as e:
                self._error(session, e, req.get("id"), kind if isinstance(kind, str) else None)
                return
        if kind == "pong":
            return
        pacer = self.pacer
        if pacer is not None and pacer.holds(session):
            self._hold(session, req)
            return
        flow = self._flows.get(session)
        if flow is None or flow.admits(req):
            self._go(session, req)
        else:
            flow.queue.append(req)

    def _waits_turn(self, session, req) -> bool:
        """Must ``req`` wait in the pacer?  Behind what it holds for the session,
        or if it is a newcomer's costly work and the pacer's budget is spent.
        Anything else (a ``/json`` switch above all: the front end reads the
        next lines in the new format) runs at once."""
        pacer = self.pacer
        if pacer is None:
            return False
        if pacer.holds(session):
            return True
        return req.get("type") in PACED and not pacer.now_ok(session)

    def _go(self, session, req) -> None:
        """Run ``req`` now, or let the pacer hold it for its turn (``handle``
        has seen that the pacer holds nothing for ``session``).  An established
        session costs one ``newcomer`` check: this is every message's path."""
        pacer = self.pacer
        if pacer is None or not pacer.newcomer(session):
            self._run(session, req)
        elif req.get("type") in PACED and not pacer.now_ok(session):
            self._hold(session, req)
        else:
            pacer.run(lambda: self._run(session, req))

    def _hold(self, session, req) -> None:
        if not session.attached:
            return  # dropped (its output overflowed, say): nobody to answer
        if self.pacer.full():
            kind = req.get("type")
            self._error(session, ChatError("busy", "the server is busy; try again shortly"),
                        req.get("id"), kind if isinstance(kind, str) else None)
            return
        self.pacer.add(session, lambda: self._turn(session, req))

    def _turn(self, session, req):
        """The pacer's turn for ``req``: behind what is in flight, as ever."""
        flow = self._flows.get(session)
        if flow is None or flow.admits(req):
            return self._run(session, req)
        flow.queue.append(req)
        return None

    def _run(self, session, req):
        """Run ``req``; the Deferred of its answer if it waits for the store."""
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
            d = handler(session, req)
        except ChatError as e:
            self._error(session, e, rid, kind)
            return
        except Exception:
            self._internal(None, session, rid, kind)  # None: the exception being handled
            return
        waits = not d.called  # for the store: hold this session's later requests
        d.addCallbacks(self._answer, self._failed, callbackArgs=(session, kind, rid),
                       errbackArgs=(session, rid, kind))
        d.addErrback(self._internal, session, rid, kind)
        if waits:
            flow = self._flows.get(session)
            if flow is None:
                flow = self._flows[session] = _Flow()
            flow.inflight += 1
            if kind not in PIPELINED:
                flow.barrier = True
            d.addBoth(lambda _: self._settled(session, flow))
            return d  # the pacer counts it in flight until it settles
        return None

    def _answer(self, data, session, kind, rid) -> None:
        if session.attached:
            session.send(Ack(kind, rid, data))
            if kind == "quit":
                self.service.drop(session, data.reason or "quit")

    def _failed(self, failure, session, rid, kind) -> None:
        if failure.check(StoreUnavailable):
            error = _store_error(failure)
        else:
            failure.trap(ChatError)
            error = failure.value
        self._error(session, error, rid, kind)

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
        pacer = self.pacer
        # Run what queued behind, until something has to wait again.
        while queue and session.attached:
            current = self._flows.get(session)
            if current is not None and not current.admits(queue[0]):
                current.queue.extend(queue)
                return
            if self._waits_turn(session, queue[0]):
                # Older than anything the pacer holds for this session: in front.
                for req in reversed(queue):
                    pacer.add(session, lambda req=req: self._turn(session, req), front=True)
                return
            req = queue.popleft()
            if pacer is not None and pacer.newcomer(session):
                pacer.run(lambda: self._run(session, req))  # noqa: B023 (runs at once)
            else:
                self._run(session, req)

    def refuse(self, session, error: ChatError) -> None:
        """Input that never became a request (bad bytes, bad JSON, bad command)."""
        try:
            self.service.admit(session)
        except ChatError as flood:
            error = flood
        self._error(session, error, error.rid, None)

    def stop(self) -> None:
        """Log the refusals counted and not yet summarised (the daemon is stopping)."""
        if self._refusals is not None:
            self._refusals.stop()

    def _error(self, session, error: ChatError, rid, kind) -> None:
        if error.code != "flood":  # a flood is logged once, when it drops the session
            if self._refusals is None:
                self._refusals = Summarised(self.log, self.service.clock)
            # The code only: a message can quote the client's input.  By the
            # thousand (a storm answered busy), counted instead (chatd.logsummary).
            self._refusals.info(f"refused: {error.code}", "refused {kind} from {nick}: {code}",
                                kind=kind, nick=session.nick, peer=session.host,
                                session=id(session), code=error.code)
        self.metrics.error(error.code)
        if session.attached:
            session.send(Error(error.code, error.message, rid, kind))
        if error.code in FATAL_CODES:
            self.service.drop(session, error.message)

    # -- handlers: each returns a Deferred of the ack's record ---------------------
    def nick(self, session, req):
        return self.service.set_nick(session, _req_str(req, "nick"))

    def join(self, session, req):
        return self.service.join(session, _req_str(req, "room"), _opt_str(req, "password"),
                                 _opt_int(req, "since"))

    def part(self, session, req):
        return self.service.part(session, _opt_str(req, "room"), _opt_str(req, "reason") or "")

    def message(self, session, req, kind="message"):
        self.metrics.message_received(session.fmt)
        return self.service.say(session, _opt_str(req, "room"), req.get("text"), kind)

    def action(self, session, req):
        return self.message(session, req, "action")

    def private(self, session, req):
        return self.service.private(session, _req_str(req, "to"), req.get("text"))

    def who(self, session, req):
        return self.service.who(session, _opt_str(req, "room"), _opt_str(req, "after"))

    def rooms(self, session, req):
        return self.service.room_list(_opt_str(req, "after"))

    def help(self, session, req):
        return succeed(acks.HelpAck(HELP_LINES))

    def ping(self, session, req):
        return succeed(acks.EmptyAck())

    def quit(self, session, req):
        return succeed(acks.QuitAck(_opt_str(req, "reason") or ""))

    def json(self, session, req):
        # The sink switches formats (a front end without another format refuses);
        # the ack then goes out in the new one.
        session.sink.switch_format("json")
        return succeed(acks.ModeSwitchAck("json"))

    def history(self, session, req):
        return self.service.history(session, _opt_str(req, "room"), _opt_int(req, "before"),
                                    _opt_int(req, "since"), _opt_int(req, "limit"))

    def register(self, session, req):
        return self.service.register(session, req.get("password"))

    def login(self, session, req):
        return self.service.login(session, _req_str(req, "nick"), req.get("password"))

    def resume(self, session, req):
        return self.service.resume(session, _req_str(req, "nick"), req.get("token"))

    def logout(self, session, req):
        return self.service.logout(session)

    def password(self, session, req):
        return self.service.change_password(session, req.get("old"), req.get("new"))

    def topic(self, session, req):
        return self.service.topic(session, _opt_str(req, "room"), _opt_str(req, "topic"))

    def kick(self, session, req):
        return self.service.kick(session, _opt_str(req, "room"), _req_str(req, "nick"),
                                 _opt_str(req, "reason") or "")

    def ban(self, session, req):
        return self.service.ban(session, _opt_str(req, "room"), _req_str(req, "nick"))

    def unban(self, session, req):
        return self.service.ban(session, _opt_str(req, "room"), _req_str(req, "nick"),
                                banned=False)

    def op(self, session, req):
        return self.service.op(session, _opt_str(req, "room"), _req_str(req, "nick"))

    def deop(self, session, req):
        return self.service.op(session, _opt_str(req, "room"), _req_str(req, "nick"),
                               grant=False)

    def mode(self, session, req):
        return self.service.mode(session, _opt_str(req, "room"), req.get("invite_only"),
                                 req.get("password"))

    def invite(self, session, req):
        return self.service.invite(session, _opt_str(req, "room"), _req_str(req, "nick"))

    def away(self, session, req):
        return self.service.set_away(session, _opt_str(req, "text"))

    def keep(self, session, req):
        return self.service.keep(session, _opt_str(req, "room"))

    def unkeep(self, session, req):
        return self.service.unkeep(session, _opt_str(req, "room"))

    # -- server operators: refused with not_server_operator for everyone else -------
    def wall(self, session, req):
        return self.service.as_operator(session).wall(session.nick, req.get("text"))

    def kill(self, session, req):
        return self.service.as_operator(session).kill(session.nick, _req_str(req, "nick"),
                                                      _opt_str(req, "reason") or "")

    def gban(self, session, req):
        ops = self.service.as_operator(session)
        duration = req.get("duration")
        if duration is None or duration == "":
            raise ChatError("missing_argument", "field 'duration' is required (0: permanent)")
        return ops.gban(session.nick, _req_str(req, "target"), duration,
                        _opt_str(req, "reason") or "")

    def ungban(self, session, req):
        return self.service.as_operator(session).ungban(session.nick, _req_str(req, "target"))

    def gbans(self, session, req):
        return self.service.as_operator(session).list_bans(session.nick)

    def sessions(self, session, req):
        return self.service.as_operator(session).list_sessions(session.nick)
