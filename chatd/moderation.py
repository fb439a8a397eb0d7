"""Room rules that persist: topic, operators, bans, invite-only and password modes.

The persistent part of each room is a ``RoomRecord`` held in memory by the
service (so entry checks need no database round trip and keep working while
the store is down) and saved whole on every change.  A change is applied and
announced only after the store has it: an operator is never told a ban
worked that a restart would forget.
"""

import hmac
from dataclasses import replace

from twisted.internet.defer import succeed

from chatd.errors import ChatError
from chatd.events import Invite, Kick, RoomChange, Topic

MAX_TOPIC = 300
MAX_ROOM_PASSWORD = 64


class Moderation:
    def __init__(self, service):
        self.service = service

    # -- entry ------------------------------------------------------------------
    def is_op(self, session, room) -> bool:
        state = self.service.room_state.get(room.name.lower())
        return (session in room.guest_ops
                or (state is not None and session.account is not None
                    and session.account in state.ops))

    @staticmethod
    def matches(session, names) -> bool:
        """A ban or op entry names a nick; it covers whoever holds it and its account."""
        return session.key in names or (session.account is not None and session.account in names)

    def check_entry(self, session, key: str, name: str, password) -> None:
        state = self.service.room_state.get(key)
        if state is None:
            return
        if self.matches(session, state.bans):
            raise ChatError("banned", f"you are banned from {name}")
        privileged = (session.account is not None and session.account in state.ops) or (
            session.key in self.service.invites.get(key, ()))
        if state.invite_only and not privileged:
            raise ChatError("invite_only", f"{name} is invite-only; ask an operator to /invite you")
        if state.password and not privileged:
            if not isinstance(password, str) or not hmac.compare_digest(
                    password.encode("utf-8"), state.password.encode("utf-8")):
                raise ChatError("bad_room_password",
                                f"{name} needs a password: /join {name} PASSWORD")

    def on_enter(self, session, room, key: str) -> None:
        """Called once entry is allowed: use up an invite; the first one in is operator."""
        invited = self.service.invites.get(key)
        if invited is not None:
            invited.discard(session.key)
            if not invited:
                del self.service.invites[key]
        state = self.service.room_state.get(key)
        if state is None:
            # A new room: its creator is its first operator, for good if logged in.
            state = self.service.room_state[key] = replace(
                _new_record(key, room.name), created=self.service.clock.seconds())
            if session.account is not None:
                state.ops.add(session.account)
            else:
                room.guest_ops.add(session)
            self._save_quietly(state)
        elif not state.ops and not room.members and not room.joining:
            # A room nobody with an account runs: whoever opens it again does.
            room.guest_ops.add(session)

    # -- changes ----------------------------------------------------------------------
    def _require_op(self, session, room_name):
        svc = self.service
        svc._require_nick(session)
        room = svc._member_room(session, room_name)
        if not self.is_op(session, room):
            raise ChatError("not_operator", f"only an operator of {room.name} can do that")
        return room

    def _update(self, room, **changes):
        """Save a changed copy of the room's state; fires with it once stored."""
        svc = self.service
        key = room.name.lower()
        old = svc.room_state.get(key) or _new_record(key, room.name)
        new = replace(old, **{"ops": set(old.ops), "bans": set(old.bans), **changes})
        return new, self._save(new)

    def _save(self, state):
        svc = self.service
        if svc.store is None:
            svc.room_state[state.key] = state
            return succeed(state)
        d = svc.store.save_room(state)

        def saved(_):
            svc.room_state[state.key] = state
            return state
        return d.addCallbacks(saved, svc.unavailable)

    def _save_quietly(self, state) -> None:
        # A new room works even if saving it fails; the next change saves it whole.
        if self.service.store is not None:
            self.service.store.save_room(state).addErrback(lambda f: None)

    def topic(self, session, room_name, text=None):
        svc = self.service
        svc._require_nick(session)
        room = svc._member_room(session, room_name)
        key = room.name.lower()
        if text is None:
            state = svc.room_state.get(key)
            return succeed(_topic_data(room, state))
        room = self._require_op(session, room.name)
        if not isinstance(text, str) or len(text) > MAX_TOPIC:
            raise ChatError("bad_request", f"a topic is a string of at most {MAX_TOPIC} characters")
        if text:
            svc.check_text(text)
        now = svc.clock.seconds()
        new, d = self._update(room, topic=text.strip(), topic_by=session.nick, topic_ts=now)

        def announce(state):
            svc.room_event(room, Topic(room.name, state.topic, session.nick, now))
            return _topic_data(room, state)
        return d.addCallback(announce)

    def kick(self, session, room_name, nick, reason=""):
        room = self._require_op(session, room_name)
        target = self._member(room, nick)
        self._kick(room, target, session.nick, reason)
        return succeed({"room": room.name, "nick": target.nick})

    def _member(self, room, nick):
        target = room.members.get(self.service.check_nick(nick))
        if target is None:
            raise ChatError("no_such_nick", f"{nick} is not in {room.name}")
        return target

    def _kick(self, room, target, by, reason) -> None:
        from chatd.service import clean_reason
        svc = self.service
        svc.room_event(room, Kick(room.name, target.nick, by, clean_reason(reason),
                                  svc.clock.seconds()))
        svc._leave(target, room)

    def ban(self, session, room_name, nick, banned=True):
        svc = self.service
        room = self._require_op(session, room_name)
        name = svc.check_nick(nick)
        if banned and name in (session.key, session.account):
            raise ChatError("bad_request", "you cannot ban yourself")
        current = svc.room_state.get(room.name.lower())
        bans = set(current.bans) if current else set()
        if banned:
            bans.add(name)
        else:
            bans.discard(name)
        _, d = self._update(room, bans=bans)
        what = "ban" if banned else "unban"

        def announce(state):
            svc.room_event(room, RoomChange(room.name, what, session.nick, nick,
                                            ts=svc.clock.seconds()))
            if banned:
                for member in list(room.members.values()):
                    if self.matches(member, {name}):
                        self._kick(room, member, session.nick, "banned")
            return {"room": room.name, "nick": nick, "bans": sorted(state.bans)}
        return d.addCallback(announce)

    def op(self, session, room_name, nick, grant=True):
        svc = self.service
        room = self._require_op(session, room_name)
        target = self._member(room, nick)
        what = "op" if grant else "deop"
        current = svc.room_state.get(room.name.lower())
        ops = set(current.ops) if current else set()
        if target.account is not None:
            (ops.add if grant else ops.discard)(target.account)
        _, d = self._update(room, ops=ops)

        def announce(state):
            if grant:
                room.guest_ops.add(target)  # covers a guest, until it leaves the room
            else:
                room.guest_ops.discard(target)
            svc.room_event(room, RoomChange(room.name, what, session.nick, target.nick,
                                            ts=svc.clock.seconds()))
            return {"room": room.name, "nick": target.nick}
        return d.addCallback(announce)

    def mode(self, session, room_name, invite_only=None, password=None):
        svc = self.service
        room = self._require_op(session, room_name)
        changes = {}
        if invite_only is not None:
            if not isinstance(invite_only, bool):
                raise ChatError("bad_request", "invite_only is true or false")
            changes["invite_only"] = invite_only
        if password is not None:
            if not isinstance(password, str) or len(password) > MAX_ROOM_PASSWORD or (
                    password and svc.check_text(password) != password.strip()):
                raise ChatError("bad_request", f"a room password is at most "
                                f"{MAX_ROOM_PASSWORD} characters without spaces at the ends")
            changes["password"] = password
        if not changes:
            raise ChatError("missing_argument", "say invite_only and/or password")
        _, d = self._update(room, **changes)

        def announce(state):
            svc.room_event(room, RoomChange(room.name, "mode", session.nick,
                                            invite_only=state.invite_only,
                                            password=bool(state.password),
                                            ts=svc.clock.seconds()))
            return {"room": room.name, "invite_only": state.invite_only,
                    "password": bool(state.password)}
        return d.addCallback(announce)

    def invite(self, session, room_name, nick):
        svc = self.service
        room = self._require_op(session, room_name)
        key = svc.check_nick(nick)
        target = svc.nicks.get(key)
        if target is None:
            raise ChatError("no_such_nick", f"{nick} is not online")
        svc.invites.setdefault(room.name.lower(), set()).add(key)
        target.send(Invite(room.name, session.nick))
        return succeed({"room": room.name, "nick": target.nick})


def _new_record(key, name):
    from chatd.store import RoomRecord
    return RoomRecord(key=key, name=name)


def _topic_data(room, state) -> dict:
    if state is None or not state.topic:
        return {"room": room.name, "topic": ""}
    return {"room": room.name, "topic": state.topic, "by": state.topic_by, "ts": state.topic_ts}
