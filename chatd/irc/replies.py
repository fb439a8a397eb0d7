"""Answers to a client's own requests: chatd acks and errors as IRC replies.

The request's id is the ``Ask`` that says which IRC command asked about what;
a chatd error becomes the numeric a classic server sends for that refusal
(chatd.irc.numerics.BY_CODE), or a NOTICE when there is none.  A NOTICE the
client sent is never answered with an error.
"""

from dataclasses import dataclass

from chatd.irc import numerics as rpl
from chatd.irc.message import line
from chatd.irc.render import USER_HOST, mask


@dataclass(frozen=True, slots=True)
class Ask:
    """A request's id: which IRC command asked, about what (its answer needs both)."""

    command: str
    target: str | None = None
    arg: str | None = None


def on_ack(conn, ack) -> None:
    ask = ack.id if isinstance(ack.id, Ask) else None
    handler = _ACKS.get(ask.command if ask is not None else None)
    if handler is not None:
        handler(conn, ask, ack.data)
    conn.answered(ask)


def on_error(conn, err) -> None:
    ask = err.id if isinstance(err.id, Ask) else None
    _error(conn, err, ask)
    conn.answered(ask)


def _error(conn, err, ask) -> None:
    command = ask.command if ask is not None else None
    if command == "NOTICE":
        return
    target = ask.target if ask is not None else None
    code = err.code
    if command == "AUTHENTICATE":
        conn.send_now(conn.numeric(rpl.ERR_SASLFAIL, "SASL authentication failed"))
        return
    if command == "PASS":
        # A wrong PASS: say so, then try the nick as a guest would.
        conn.send_now(conn.numeric(rpl.ERR_PASSWDMISMATCH, "Password incorrect"))
        conn.ask(Ask("NICK", target), {"type": "nick", "nick": target})
        return
    if command in ("NAMES", "WHO") and code in ("no_such_room", "invalid_room", "not_in_room"):
        # As IRC servers answer a room that does not exist (or one not shown): the end
        # of the list alone.
        if command == "NAMES":
            conn.reply(rpl.RPL_ENDOFNAMES, target, "End of /NAMES list.")
        else:
            conn.reply(rpl.RPL_ENDOFWHO, target, "End of /WHO list.")
        return
    if command == "PRIVMSG" and code == "not_in_room":
        numeric, named = rpl.ERR_CANNOTSENDTOCHAN, True
    elif command == "PRIVMSG" and code in ("invalid_nick", "invalid_room"):
        numeric, named = rpl.ERR_NOSUCHNICK, True  # no such nick/channel
    elif command == "KICK" and code == "no_such_nick":
        conn.reply(rpl.ERR_USERNOTINCHANNEL, ask.arg, target, err.message)
        return
    elif command == "CHATHISTORY":
        conn.send(line("FAIL", "CHATHISTORY", "MESSAGE_ERROR", target or "*", err.message,
                       source=conn.server.name))
        return
    else:
        numeric, named = rpl.BY_CODE.get(code, (None, False))
        if code in ("invalid_nick", "no_such_nick") and ask is not None and ask.arg:
            target = ask.arg  # MODE +o/+b, INVITE: the nick is what is wrong
    if numeric is None:
        conn.notice(f"error {code}: {err.message}")
        return
    params = (target,) if named and target else ()
    out = conn.numeric(numeric, *params, err.message)
    if conn.registered:
        conn.send(out)
    else:
        conn.send_now(out)


def _nick(conn, ask, data) -> None:
    if not conn.registered:
        conn.welcome()


def _login(conn, ask, data) -> None:
    me = conn.me
    conn.send_now(conn.numeric(rpl.RPL_LOGGEDIN, mask(me), data.nick,
                               f"You are now logged in as {data.nick}"))
    if ask.command == "AUTHENTICATE":
        conn.send_now(conn.numeric(rpl.RPL_SASLSUCCESS, "SASL authentication successful"))
    else:
        conn.try_register()


def _join(conn, ask, data) -> None:
    if data.topic:
        conn.reply(rpl.RPL_TOPIC, data.room, data.topic)
        state = conn.service.room_states.get(data.room.lower())
        if state is not None and state.topic_by:
            conn.reply(rpl.RPL_TOPICWHOTIME, data.room, state.topic_by,
                       str(int(state.topic_ts or 0)), trail=False)
    names(conn, data.room)
    conn.flush_history(data.room)


def names(conn, room_name: str, nicks=None) -> None:
    """353 and 366 for a room: operators marked @."""
    service = conn.service
    room = service.rooms.get(room_name.lower())
    entries = []
    if room is not None:
        for member in room.members.values():
            prefix = "@" if service.mod.is_op(member, room) else ""
            entries.append(prefix + member.nick)
    elif nicks:
        entries = list(nicks)
    # 353 lines fit in 512 bytes: a fixed number of the longest nicks per line.
    per_line = max(1, 400 // (service.limits.max_nick + 2))
    for i in range(0, len(entries), per_line):
        conn.reply(rpl.RPL_NAMREPLY, "=", room_name, " ".join(entries[i:i + per_line]))
    conn.reply(rpl.RPL_ENDOFNAMES, room_name, "End of /NAMES list.")


def _who(conn, ask, data) -> None:
    if ask.command == "NAMES":
        names(conn, data.room, data.nicks)
        return
    room = conn.service.rooms.get(data.room.lower())
    for nick in data.nicks:
        member = room.members.get(nick.lower()) if room is not None else None
        if member is not None:
            who_reply(conn, data.room, member, room)
    conn.reply(rpl.RPL_ENDOFWHO, ask.target, "End of /WHO list.")


def who_reply(conn, channel: str, member, room=None) -> None:
    """352 as RFC 2812 has it: <channel> <user> <host> <server> <nick> <H|G>[*][@]
    :<hopcount> <realname> (``*``: a server operator; ``@``: a room operator)."""
    service = conn.service
    flags = "G" if member.away else "H"
    if service.ops.is_operator(member):
        flags += "*"
    if room is not None and service.mod.is_op(member, room):
        flags += "@"
    conn.reply(rpl.RPL_WHOREPLY, channel, member.nick, USER_HOST, conn.server.name,
               member.nick, flags, f"0 {realname(member)}")


def realname(session) -> str:
    """An IRC user's USER realname; the nick for everyone else."""
    irc = getattr(session.sink, "irc", None)
    return irc.realname if irc is not None else session.nick


def _rooms(conn, ask, data) -> None:
    """One page of chatd's room listing as 322 lines; the next page is asked for
    until the last (a LIST lists every room, as on IRC servers), then 323."""
    states = conn.service.room_states
    wanted = None if ask.arg is None else {name.lower() for name in ask.arg.split(",")}
    for entry in data.rooms:
        if wanted is not None and entry["room"].lower() not in wanted:
            continue
        state = states.get(entry["room"].lower())
        topic = state.topic if state is not None and state.topic else ""
        conn.reply(rpl.RPL_LIST, entry["room"], str(entry["members"]), topic)
    if data.more and data.rooms:
        last = data.rooms[-1]["room"]
        conn.ask(Ask("LIST", None, ask.arg), {"type": "rooms", "after": last})
        return
    conn.reply(rpl.RPL_LISTEND, "End of /LIST")


def _topic(conn, ask, data) -> None:
    if ask.arg is not None:
        return  # a change: everyone in the room, the setter too, saw the TOPIC line
    if not data.topic:
        conn.reply(rpl.RPL_NOTOPIC, data.room, "No topic is set")
        return
    conn.reply(rpl.RPL_TOPIC, data.room, data.topic)
    if data.by:
        conn.reply(rpl.RPL_TOPICWHOTIME, data.room, data.by, str(int(data.ts or 0)),
                   trail=False)


def _invite(conn, ask, data) -> None:
    conn.reply(rpl.RPL_INVITING, data.nick, data.room, trail=False)


def _private(conn, ask, data) -> None:
    if getattr(data, "queued", None):
        conn.notice(f"{data.to} is offline; your message waits for their next login")
        return
    to = getattr(data, "to", None)  # a private message's ack (a room's has none)
    if to is not None and ask.command == "PRIVMSG":  # never for a NOTICE, as on IRC
        holder = conn.service.nicks.get(to.lower())
        if holder is not None and holder.away and holder is not conn.session:
            conn.reply(rpl.RPL_AWAY, holder.nick, holder.away)


def _ping(conn, ask, data) -> None:
    conn.send_now(line("PONG", conn.server.name, ask.target or conn.server.name,
                       source=conn.server.name, trail=True))


def _away(conn, ask, data) -> None:
    if data.away:
        conn.reply(rpl.RPL_NOWAWAY, "You have been marked as being away")
    else:
        conn.reply(rpl.RPL_UNAWAY, "You are no longer marked as being away")


def _history(conn, ask, data) -> None:
    conn.flush_history(data.room, always_batch=True)


_ACKS = {
    "NICK": _nick,
    "PASS": _login,
    "AUTHENTICATE": _login,
    "JOIN": _join,
    "NAMES": _who,
    "WHO": _who,
    "LIST": _rooms,
    "TOPIC": _topic,
    "INVITE": _invite,
    "PRIVMSG": _private,
    "PING": _ping,
    "AWAY": _away,
    "CHATHISTORY": _history,
}
