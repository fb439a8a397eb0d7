"""Room rules: who may enter, who is an operator, and what operators can do.

Reads room state through ``RoomStates`` and membership through ``Rooms``,
changes them only through their public calls, and tells the room through the
bus.  Each operation takes the ``Room`` the service has already checked the
caller is in, and returns a Deferred firing its ack record.
"""

import hmac

from twisted.internet.defer import succeed
from twisted.logger import Logger

from chatd import acks
from chatd.errors import ChatError
from chatd.events import Invite, Kick, RoomChange, Topic
from chatd.validate import check_text, clean_reason

MAX_TOPIC = 300
MAX_ROOM_PASSWORD = 64


def matches(session, names) -> bool:
    """A ban or op entry names a nick; it covers whoever holds it and its account."""
    return session.key in names or (session.account is not None and session.account in names)


class Moderation:
    log = Logger()

    def __init__(self, states, rooms, nicks, bus, clock, limits, notices=None):
        self.states = states
        self.notices = notices  # chatd.notices: a kick is its own notice
        self.rooms = rooms
        self.nicks = nicks
        self.bus = bus
        self.clock = clock
        self.limits = limits

    # -- entry ------------------------------------------------------------------
    def is_op(self, session, room) -> bool:
        state = self.states.get(room.key)
        return (self.rooms.is_guest_op(room, session)
                or (state is not None and session.account is not None
                    and session.account in state.ops))

    def check_entry(self, session, key: str, name: str, password) -> None:
        state = self.states.get(key)
        if state is None:
            return
        if matches(session, state.bans):
            raise ChatError("banned", f"you are banned from {name}")
        privileged = (session.account is not None and session.account in state.ops) or (
            self.states.is_invited(key, session.key))
        if state.invite_only and not privileged:
            raise ChatError("invite_only", f"{name} is invite-only; ask an operator to /invite you")
        if state.password and not privileged:
            if not isinstance(password, str) or not hmac.compare_digest(
                    password.encode("utf-8"), state.password.encode("utf-8")):
                raise ChatError("bad_room_password",
                                f"{name} needs a password: /join {name} PASSWORD")

    def on_enter(self, session, room) -> None:
        """Entry is allowed: use up an invite; the first one in is operator."""
        key = room.key
        self.states.use_invite(key, session.key)
        state = self.states.get(key)
        if state is None:
            # A new room: its creator is its first operator (by account if logged in).
            if session.account is None:
                self.rooms.set_guest_op(room, session, True)
            self.states.create(key, room.name, self.clock.seconds(), session.account)
        elif not state.ops and not room.members and not room.joining:
            # A room nobody with an account runs: whoever opens it again does.
            self.rooms.set_guest_op(room, session, True)

    # -- operations ---------------------------------------------------------------
    def _require_op(self, session, room) -> None:
        if not self.is_op(session, room):
            raise ChatError("not_operator", f"only an operator of {room.name} can do that")

    def topic(self, session, room, text=None):
        if text is None:
            return succeed(acks.TopicAck.of(room.name, self.states.get(room.key)))
        self._require_op(session, room)
        if not isinstance(text, str) or len(text) > MAX_TOPIC:
            raise ChatError("bad_request", f"a topic is a string of at most {MAX_TOPIC} characters")
        if text:
            text = check_text(text, self.limits.max_message)  # as a message: clipped marks
        now = self.clock.seconds()
        d = self.states.set_fields(room.key, room.name, topic=text.strip(),
                                   topic_by=session.nick, topic_ts=now)

        def announce(state):
            self.bus.publish_room(room.key, Topic(room.name, state.topic, session.nick, now))
            return acks.TopicAck.of(room.name, state)
        return d.addCallback(announce)

    def _member(self, room, nick):
        target = room.members.get(self.nicks.check(nick))
        if target is None:
            raise ChatError("no_such_nick", f"{nick} is not in {room.name}")
        return target

    def kick(self, session, room, nick, reason=""):
        self._require_op(session, room)
        target = self._member(room, nick)
        self._kick(room, target, session.nick, reason)
        return succeed(acks.KickAck(room.name, target.nick))

    def _kick(self, room, target, by, reason) -> None:
        self.bus.publish_room(room.key, Kick(room.name, target.nick, by, clean_reason(reason),
                                             self.clock.seconds()))
        if self.notices is not None:
            self.notices.forget(room.key, target.key)
        self.rooms.leave(target, room)

    def ban(self, session, room, nick, banned=True):
        self._require_op(session, room)
        name = self.nicks.check(nick)
        if banned and name in (session.key, session.account):
            raise ChatError("bad_request", "you cannot ban yourself")
        d = self.states.set_entry(room.key, room.name, "bans", name, banned, session.nick)
        what = "ban" if banned else "unban"

        def announce(state):
            self.bus.publish_room(room.key, RoomChange(room.name, what, session.nick, nick,
                                                       ts=self.clock.seconds()))
            if banned:
                for member in list(room.members.values()):
                    if matches(member, {name}):
                        self._kick(room, member, session.nick, "banned")
            return acks.BanAck(room.name, nick, sorted(state.bans))
        return d.addCallback(announce)

    def banned_elsewhere(self, key: str, name: str, by: str) -> None:
        """A ban made on another node (chatd.roomstate ``apply_remote``): this node's
        members of the room that it matches are kicked, as the banning node kicked its own."""
        room = self.rooms.get(key)
        if room is None:
            return
        for member in list(room.members.values()):
            if matches(member, {name}):
                self._kick(room, member, by, "banned")

    def kicked_elsewhere(self, key: str, nick_key: str, by: str, reason: str) -> None:
        """An operator on another node kicked a member of the room who is on this
        node: removed here, the kick shown to everyone as a kick made here is."""
        room = self.rooms.get(key)
        target = room.members.get(nick_key) if room is not None else None
        if target is not None:
            self._kick(room, target, by, reason)

    def op(self, session, room, nick, grant=True):
        self._require_op(session, room)
        target = self._member(room, nick)
        return self._op(room, target, session.nick, grant)

    def _op(self, room, target, by: str, grant: bool):
        what = "op" if grant else "deop"
        if target.account is not None:
            d = self.states.set_entry(room.key, room.name, "ops", target.account, grant)
        else:
            d = succeed(None)

        def announce(_):
            # Covers a guest, until it leaves the room.
            self.rooms.set_guest_op(room, target, grant)
            self.bus.publish_room(room.key, RoomChange(room.name, what, by,
                                                       target.nick, ts=self.clock.seconds()))
            return acks.OpAck(room.name, target.nick)
        return d.addCallback(announce)

    def opped_elsewhere(self, key: str, nick_key: str, by: str, grant: bool) -> None:
        """An operator on another node made (or unmade) an operator of a member who
        is on this node: done here, as it would be for an operator here."""
        room = self.rooms.get(key)
        target = room.members.get(nick_key) if room is not None else None
        if target is not None:
            self._op(room, target, by, grant).addErrback(
                lambda f: self.log.failure("an op from another node failed", f))

    def mode(self, session, room, invite_only=None, password=None):
        self._require_op(session, room)
        changes = {}
        if invite_only is not None:
            if not isinstance(invite_only, bool):
                raise ChatError("bad_request", "invite_only is true or false")
            changes["invite_only"] = invite_only
        if password is not None:
            if not isinstance(password, str) or len(password) > MAX_ROOM_PASSWORD or (
                    password and check_text(password, self.limits.max_message)
                    != password.strip()):
                raise ChatError("bad_request", f"a room password is at most "
                                f"{MAX_ROOM_PASSWORD} characters without spaces at the ends")
            changes["password"] = password
        if not changes:
            raise ChatError("missing_argument", "say invite_only and/or password")
        d = self.states.set_fields(room.key, room.name, **changes)

        def announce(state):
            self.bus.publish_room(room.key, RoomChange(
                room.name, "mode", session.nick, invite_only=state.invite_only,
                password=bool(state.password), ts=self.clock.seconds()))
            return acks.ModeAck(room.name, state.invite_only, bool(state.password))
        return d.addCallback(announce)

    def keep(self, session, room):
        """Keep the room (store it, with its topic, operators, bans and modes) so it
        outlasts its members; an operator logged in to an account does this."""
        self._require_op(session, room)
        if session.account is None:
            raise ChatError("not_logged_in", "/login first: a kept room belongs to an account")
        if self.states.is_kept(room.key):
            raise ChatError("already_kept", f"{room.name} is already kept")
        if self.states.kept_by(session.account) >= self.limits.max_kept_rooms:
            raise ChatError("too_many_kept",
                            f"an account may keep at most {self.limits.max_kept_rooms} rooms")
        d = self.states.keep(room.key, room.name, session.account)
        d.addCallback(lambda _: self.log.info("{nick} keeps {room}", nick=session.account,
                                              room=room.name))
        return d.addCallback(lambda _: acks.KeepAck(room.name, True))

    def unkeep(self, session, room):
        """Stop keeping the room: its owner (or, for a room kept before rooms had
        owners, any operator with an account) does this."""
        state = self.states.get(room.key)
        if state is None or not self.states.is_kept(room.key):
            raise ChatError("not_kept", f"{room.name} is not kept")
        owner = state.owner
        if session.account is None or (owner and session.account != owner) or (
                not owner and not self.is_op(session, room)):
            raise ChatError("not_operator", f"only the account that keeps {room.name} can "
                            "stop keeping it")
        def unkept(_):
            if self.rooms.get(room.key) is None:  # it emptied while the store worked
                self.states.discard(room.key)
            return acks.KeepAck(room.name, False)
        return self.states.unkeep(room.key).addCallback(unkept)

    def invite(self, session, room, nick):
        self._require_op(session, room)
        key = self.nicks.check(nick)
        target = self.nicks.get(key)
        if target is None and getattr(self.bus, "publish_state", None) is None:
            raise ChatError("no_such_nick", f"{nick} is not online")
        if target is None:
            # Perhaps on another node.  The invite is recorded first, on every
            # node, so it is there before the invited person can act on it.
            self.states.invite(room.key, key)

            def delivered(found):
                if not found:
                    self.states.use_invite(room.key, key)
                    raise ChatError("no_such_nick", f"{nick} is not online")
                return acks.InviteAck(room.name, nick)
            return self.bus.publish_remote_user(key, Invite(room.name, session.nick)).addCallback(
                delivered)
        self.states.invite(room.key, key)
        self.bus.publish_user(key, Invite(room.name, session.nick))
        return succeed(acks.InviteAck(room.name, target.nick))
