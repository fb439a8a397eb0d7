"""IRC commands as chatd requests: one function per command.

Chat actions go to the shared dispatcher (rules, flood control and limits
are the service's); queries about state this connection can read (WHOIS,
ISON, MODE queries, LUSERS, MOTD) are answered here, after counting the
command like any request.
"""

import re
import time

from chatd.errors import ChatError
from chatd.irc import numerics as rpl
from chatd.irc.caps import SaslError, sasl_plain
from chatd.irc.message import line
from chatd.irc.render import USER_HOST
from chatd.irc.replies import Ask, realname, who_reply
from chatd.store import MAX_PAGE

# mIRC colours, bold, italics, underline, reverse, monospace, strike, reset:
# chatd text has no control characters, so formatting is taken out.
FORMATTING_RE = re.compile(r"\x03(\d{1,2}(,\d{1,2})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]")
SASL_CHUNK = 400
# Commands a client may send before it is registered.
BEFORE_REGISTRATION = frozenset({"CAP", "NICK", "USER", "PASS", "AUTHENTICATE", "PING",
                                 "PONG", "QUIT"})


def handle(conn, msg) -> None:
    """One line: counted once by the service (flood control, proof of life), then run."""
    if not conn.admit():
        return
    command = msg.command
    if not conn.registered and command not in BEFORE_REGISTRATION:
        conn.send_now(conn.numeric(rpl.ERR_NOTREGISTERED, "You have not registered"))
        return
    handler = COMMANDS.get(command)
    if handler is None:
        conn.reply(rpl.ERR_UNKNOWNCOMMAND, command, "Unknown command")
        return
    handler(conn, msg.params)


def _need(conn, params, n: int, command: str) -> bool:
    if len(params) >= n and all(params[:n]):
        return True
    out = conn.numeric(rpl.ERR_NEEDMOREPARAMS, command, "Not enough parameters")
    conn.send(out) if conn.registered else conn.send_now(out)
    return False


# -- registration ----------------------------------------------------------------------
def cap(conn, params) -> None:
    if not params:
        return _need(conn, params, 1, "CAP")
    sub = params[0].upper()
    srv = conn.server.name
    me = conn.me
    if sub == "LS":
        for caps in conn.caps.ls(params[1] if len(params) > 1 else None):
            conn.send_now(line("CAP", me, "LS", caps, source=srv, trail=True))
    elif sub == "LIST":
        conn.send_now(line("CAP", me, "LIST", conn.caps.listing(), source=srv, trail=True))
    elif sub == "REQ":
        acked, names = conn.caps.req(params[1] if len(params) > 1 else "")
        conn.send_now(line("CAP", me, "ACK" if acked else "NAK", names, source=srv, trail=True))
        if acked:
            conn.caps_changed()
    elif sub == "END":
        conn.caps.end()
        conn.try_register()
    else:
        conn.send_now(conn.numeric("410", sub, "Invalid CAP command"))


def nick(conn, params) -> None:
    if not params or not params[0]:
        out = conn.numeric(rpl.ERR_NONICKNAMEGIVEN, "No nickname given")
        conn.send(out) if conn.registered else conn.send_now(out)
        return
    if conn.registered:
        conn.ask(Ask("NICK", params[0]), {"type": "nick", "nick": params[0]})
        return
    conn.wanted_nick = params[0]
    conn.try_register()


def user(conn, params) -> None:
    if conn.registered or conn.user is not None:
        return conn.send_now(conn.numeric(rpl.ERR_ALREADYREGISTERED,
                                          "You may not reregister"))
    if len(params) < 4 or not params[0]:  # an empty realname is allowed
        return _need(conn, (), 1, "USER")
    conn.user = (params[0], params[3] or params[0])
    conn.try_register()


def pass_(conn, params) -> None:
    if conn.registered:
        return conn.send(conn.numeric(rpl.ERR_ALREADYREGISTERED, "You may not reregister"))
    if _need(conn, params, 1, "PASS"):
        conn.password = params[0]


def authenticate(conn, params) -> None:
    if not conn.caps.has("sasl"):
        return conn.send_now(conn.numeric(rpl.ERR_SASLFAIL, "Request the sasl capability first"))
    if not _need(conn, params, 1, "AUTHENTICATE"):
        return
    session = conn.session
    if session.account is not None:
        return conn.send_now(conn.numeric(rpl.ERR_SASLALREADY, "You have already authenticated"))
    arg = params[0]
    if conn.sasl is None:
        if arg.upper() != "PLAIN":
            conn.send_now(conn.numeric("908", "PLAIN", "are available SASL mechanisms"),
                          conn.numeric(rpl.ERR_SASLFAIL, "SASL authentication failed"))
            return
        conn.sasl = ""
        conn.send_now(line("AUTHENTICATE", "+"))
        return
    if arg == "*":
        conn.sasl = None
        return conn.send_now(conn.numeric(rpl.ERR_SASLABORTED, "SASL authentication aborted"))
    conn.sasl += "" if arg == "+" else arg
    if len(arg) == SASL_CHUNK:
        if len(conn.sasl) > 4 * SASL_CHUNK:
            conn.sasl = None
            conn.send_now(conn.numeric(rpl.ERR_SASLTOOLONG, "SASL message too long"))
        return  # more to come
    payload, conn.sasl = conn.sasl, None
    try:
        name, password = sasl_plain(payload)
    except SaslError:
        return conn.send_now(conn.numeric(rpl.ERR_SASLFAIL, "SASL authentication failed"))
    conn.ask(Ask("AUTHENTICATE", name), {"type": "login", "nick": name, "password": password})


def ping(conn, params) -> None:
    if not params:
        return conn.send_now(conn.numeric("409", "No origin specified"))
    conn.ask(Ask("PING", params[-1]), {"type": "ping"})


def pong(conn, params) -> None:
    pass  # proof of life: counted as the line it is


def quit_(conn, params) -> None:
    conn.ask(Ask("QUIT"), {"type": "quit", "reason": params[0] if params else "Quit"})


# -- rooms -----------------------------------------------------------------------------
def join(conn, params) -> None:
    if not _need(conn, params, 1, "JOIN"):
        return
    if params[0] == "0":
        for key in list(conn.session.rooms):
            room = conn.session.rooms[key]
            conn.ask(Ask("PART", room.name), {"type": "part", "room": room.name})
        return
    keys = params[1].split(",") if len(params) > 1 else []
    for i, room in enumerate(params[0].split(",")):
        if not room or room.lower() in conn.session.rooms:
            continue  # joining a room you are in does nothing, as on IRC servers
        req = {"type": "join", "room": room}
        if i < len(keys) and keys[i]:
            req["password"] = keys[i]
        conn.ask(Ask("JOIN", room), req)


def part(conn, params) -> None:
    if not _need(conn, params, 1, "PART"):
        return
    reason = params[1] if len(params) > 1 else ""
    for room in params[0].split(","):
        if room:
            conn.ask(Ask("PART", room), {"type": "part", "room": room, "reason": reason})


def _text(raw: str) -> tuple:
    """(kind, text): a CTCP ACTION is an action; IRC formatting is taken out."""
    kind = "message"
    if raw.startswith("\x01ACTION") and len(raw) > 8:
        kind, raw = "action", raw[8:].rstrip("\x01")
    return kind, FORMATTING_RE.sub("", raw)


def privmsg(conn, params, command: str = "PRIVMSG") -> None:
    if not params or not params[0]:
        if command == "PRIVMSG":
            conn.reply(rpl.ERR_NORECIPIENT, f"No recipient given ({command})")
        return
    if len(params) < 2 or not params[1]:
        if command == "PRIVMSG":
            conn.reply(rpl.ERR_NOTEXTTOSEND, "No text to send")
        return
    kind, text = _text(params[1])
    if text.startswith("\x01"):
        return  # other CTCP requests: chatd has no equivalent
    for target in params[0].split(",")[:4]:
        if not target:
            continue
        ask = Ask(command, target)
        if target.startswith("#"):
            conn.ask(ask, {"type": kind, "room": target, "text": text})
        else:
            if kind == "action":
                text = f"* {conn.me} {text}"  # chatd's private messages have no actions
            conn.ask(ask, {"type": "private", "to": target, "text": text})


def notice(conn, params) -> None:
    privmsg(conn, params, "NOTICE")


def tagmsg(conn, params) -> None:
    pass  # tags alone (typing notifications): chatd has nothing to carry them


def names(conn, params) -> None:
    if not params or not params[0]:
        return conn.reply(rpl.RPL_ENDOFNAMES, "*", "End of /NAMES list.")
    room = params[0].split(",")[0]
    conn.ask(Ask("NAMES", room), {"type": "who", "room": room})


def topic(conn, params) -> None:
    if not _need(conn, params, 1, "TOPIC"):
        return
    text = params[1] if len(params) > 1 else None
    conn.ask(Ask("TOPIC", params[0], text), {"type": "topic", "room": params[0], "topic": text})


def list_(conn, params) -> None:
    """Every room, page after page of chatd's listing; ``LIST #a,#b``: those rooms.
    ``arg`` is the filter, comma-separated (other LIST conditions are ignored)."""
    wanted = params[0] if params and params[0].startswith("#") else None
    conn.reply(rpl.RPL_LISTSTART, "Channel", "Users  Name")
    conn.ask(Ask("LIST", None, wanted), {"type": "rooms"})


def kick(conn, params) -> None:
    if not _need(conn, params, 2, "KICK"):
        return
    reason = params[2] if len(params) > 2 else ""
    for nick_ in params[1].split(","):
        conn.ask(Ask("KICK", params[0], nick_),
                 {"type": "kick", "room": params[0], "nick": nick_, "reason": reason})


def invite(conn, params) -> None:
    if not _need(conn, params, 2, "INVITE"):
        return
    holder = _holder(conn, params[0])
    if holder is not None and params[1].lower() in holder.rooms:
        return conn.reply(rpl.ERR_USERONCHANNEL, holder.nick, params[1], "is already on channel")
    conn.ask(Ask("INVITE", params[1], params[0]),
             {"type": "invite", "room": params[1], "nick": params[0]})


# -- modes -----------------------------------------------------------------------------
def mode(conn, params) -> None:
    if not _need(conn, params, 1, "MODE"):
        return
    target = params[0]
    if not target.startswith("#"):
        return _user_mode(conn, params)
    if len(params) == 1:
        return _channel_modes(conn, target)
    args = list(params[2:])
    sign = "+"
    for letter in params[1]:
        if letter in "+-":
            sign = letter
            continue
        if letter == "b" and not args:
            _ban_list(conn, target)
        elif letter in "bo":
            if not args:
                return _need(conn, (), 1, "MODE")
            who = args.pop(0)
            who = ban_nick(who) if letter == "b" else who.split("!")[0]
            kind = {"b": ("ban", "unban"), "o": ("op", "deop")}[letter][sign == "-"]
            conn.ask(Ask("MODE", target, who), {"type": kind, "room": target, "nick": who})
        elif letter == "i":
            conn.ask(Ask("MODE", target),
                     {"type": "mode", "room": target, "invite_only": sign == "+"})
        elif letter == "k":
            key = args.pop(0) if args else ""
            if sign == "+" and not key:
                return _need(conn, (), 1, "MODE")
            conn.ask(Ask("MODE", target), {"type": "mode", "room": target,
                                           "password": key if sign == "+" else ""})
        else:
            conn.reply(rpl.ERR_UNKNOWNMODE, letter, "is unknown mode char to me")


def ban_nick(mask: str) -> str:
    """The nick a ban mask names.  chatd bans nicks, and shows everyone as
    ``nick!nick@chatd``, so clients that build masks from the user name (irssi's
    ``/ban nick`` sends ``*!*nick@chatd``, WeeChat's ``*!nick@chatd``) name the
    nick there; a mask that names no one (``*!*@host``) is refused as a nick."""
    nick, _, rest = mask.partition("!")
    if not any(c in nick for c in "*?") or not rest:
        return nick
    user = rest.partition("@")[0].lstrip("*~")
    return user if user and not any(c in user for c in "*?") else nick


def _user_mode(conn, params) -> None:
    """As the modern client protocol has it: 221 for a query; a change applies the
    modes chatd has (``i``, ``w``: recorded and shown, they change nothing else) and
    says so in a MODE line, 501 for the rest; 401 or 502 for somebody else."""
    target = params[0]
    if target.lower() != conn.me.lower():
        if _holder(conn, target) is None:
            return conn.reply(rpl.ERR_NOSUCHNICK, target, "No such nick/channel")
        return conn.reply(rpl.ERR_USERSDONTMATCH, "Cant change mode for other users")
    if len(params) == 1 or not params[1]:
        return conn.reply(rpl.RPL_UMODEIS, "+" + "".join(sorted(conn.user_modes)))
    changed, unknown = conn.change_user_modes(params[1])
    if changed:
        conn.send(line("MODE", conn.me, changed, source=conn.me, trail=True))
    if unknown:
        conn.reply(rpl.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")


def _room_state(conn, target: str):
    service = conn.service
    try:
        key = service.check_room(target)
    except ChatError:
        key = None
    if key is None or (service.rooms.get(key) is None and service.room_states.get(key) is None):
        conn.reply(rpl.ERR_NOSUCHCHANNEL, target, "No such channel")
        return None, None
    return key, service.room_states.get(key)


def _channel_modes(conn, target: str) -> None:
    key, state = _room_state(conn, target)
    if key is None:
        return
    modes = "+"
    params = []
    if state is not None and state.invite_only:
        modes += "i"
    if state is not None and state.password:
        modes += "k"
        params.append(state.password if key in conn.session.rooms else "*")
    conn.reply(rpl.RPL_CHANNELMODEIS, target, modes, *params, trail=False)
    if state is not None and state.created:
        conn.reply(rpl.RPL_CREATIONTIME, target, str(int(state.created)), trail=False)


def _ban_list(conn, target: str) -> None:
    key, state = _room_state(conn, target)
    if key is None:
        return
    for entry in sorted(state.bans if state is not None else ()):
        conn.reply(rpl.RPL_BANLIST, target, f"{entry}!*@*", trail=False)
    conn.reply(rpl.RPL_ENDOFBANLIST, target, "End of channel ban list")


# -- people ----------------------------------------------------------------------------
def _holder(conn, nick_: str):
    try:
        return conn.service.nicks.get(conn.service.nicks.check(nick_))
    except ChatError:
        return None


def who(conn, params) -> None:
    target = params[0] if params else "*"
    if target.startswith("#"):
        conn.ask(Ask("WHO", target), {"type": "who", "room": target})
        return
    holder = _holder(conn, target)
    if holder is not None:
        who_reply(conn, "*", holder)
    conn.reply(rpl.RPL_ENDOFWHO, target, "End of /WHO list.")


def _away(session) -> str | None:
    return session.away


def whois(conn, params) -> None:
    if not _need(conn, params, 1, "WHOIS"):
        return
    target = params[-1].split(",")[0]
    holder = _holder(conn, target)
    if holder is None:
        conn.reply(rpl.ERR_NOSUCHNICK, target, "No such nick/channel")
        conn.reply(rpl.RPL_ENDOFWHOIS, target, "End of /WHOIS list.")
        return
    service = conn.service
    n = holder.nick
    conn.reply(rpl.RPL_WHOISUSER, n, n, USER_HOST, "*", realname(holder))
    rooms = []
    for room in holder.rooms.values():
        state = service.room_states.get(room.key)
        closed = state is not None and (state.invite_only or state.password)
        if closed and room.key not in conn.session.rooms:
            continue  # who is in a closed room is its members' business
        rooms.append(("@" if service.mod.is_op(holder, room) else "") + room.name)
    if rooms:
        conn.reply(rpl.RPL_WHOISCHANNELS, n, " ".join(rooms))
    conn.reply(rpl.RPL_WHOISSERVER, n, conn.server.name, "chatd")
    if service.ops.is_operator(holder):
        conn.reply(rpl.RPL_WHOISOPERATOR, n, "is a server operator")
    away = _away(holder)
    if away:
        conn.reply(rpl.RPL_AWAY, n, away)
    if holder.account is not None:
        conn.reply(rpl.RPL_WHOISACCOUNT, n, n, "is logged in as")
    now = service.clock.seconds()
    conn.reply(rpl.RPL_WHOISIDLE, n, str(int(now - holder.last_seen)),
               str(int(holder.connected_at)), "seconds idle, signon time")
    conn.reply(rpl.RPL_ENDOFWHOIS, n, "End of /WHOIS list.")


def away(conn, params) -> None:
    conn.ask(Ask("AWAY"), {"type": "away", "text": params[0] if params else ""})


def ison(conn, params) -> None:
    online = []
    for word in " ".join(params).split():
        holder = _holder(conn, word)
        if holder is not None:
            online.append(holder.nick)
    conn.reply(rpl.RPL_ISON, " ".join(online))


def userhost(conn, params) -> None:
    out = []
    for word in params[:5]:
        holder = _holder(conn, word)
        if holder is not None:
            sign = "-" if _away(holder) else "+"
            op = "*" if conn.service.ops.is_operator(holder) else ""
            out.append(f"{holder.nick}{op}={sign}{holder.nick}@{USER_HOST}")
    conn.reply(rpl.RPL_USERHOST, " ".join(out))


def whowas(conn, params) -> None:
    """chatd keeps no record of nicks gone (irssi asks after a WHOIS 401)."""
    if not _need(conn, params, 1, "WHOWAS"):
        return
    target = params[0].split(",")[0]
    conn.reply(rpl.ERR_WASNOSUCHNICK, target, "There was no such nickname")
    conn.reply(rpl.RPL_ENDOFWHOWAS, target, "End of WHOWAS")


def kill(conn, params) -> None:
    """Server operators (accounts named by --operators): disconnect someone."""
    if _need(conn, params, 1, "KILL"):
        conn.ask(Ask("KILL", params[0]), {"type": "kill", "nick": params[0],
                                           "reason": params[1] if len(params) > 1 else ""})


def wallops(conn, params) -> None:
    """Server operators: a notice to everyone connected (chatd's /wall)."""
    if _need(conn, params, 1, "WALLOPS"):
        conn.ask(Ask("WALLOPS"), {"type": "wall", "text": params[0]})


def lusers(conn, params) -> None:
    conn.lusers()


def motd(conn, params) -> None:
    conn.motd()


def version(conn, params) -> None:
    conn.version()


def time_(conn, params) -> None:
    now = conn.service.clock.seconds()
    conn.reply(rpl.RPL_TIME, conn.server.name, str(int(now)), "0",
               time.strftime("%A %B %d %Y -- %H:%M:%S +00:00", time.gmtime(now)))


# -- history ---------------------------------------------------------------------------
def chathistory(conn, params) -> None:
    """CHATHISTORY LATEST|BEFORE|AFTER <#room> <*|msgid=N> <limit>."""
    if not conn.caps.history():
        return conn.reply(rpl.ERR_UNKNOWNCOMMAND, "CHATHISTORY", "Unknown command")
    if len(params) < 4:
        return conn.send(line("FAIL", "CHATHISTORY", "NEED_MORE_PARAMS",
                              "Missing parameters", source=conn.server.name))
    sub, target, ref, limit = params[0].upper(), params[1], params[2], params[3]
    if sub not in ("LATEST", "BEFORE", "AFTER"):
        return _bad_history(conn, sub, "supported: LATEST, BEFORE, AFTER")
    if not limit.isdigit():
        return _bad_history(conn, sub, "the limit is a number")
    req = {"type": "history", "room": target, "limit": max(1, min(int(limit), MAX_PAGE))}
    if not (sub == "LATEST" and ref == "*"):
        if not ref.startswith("msgid=") or not ref[6:].isdigit():
            return _bad_history(conn, sub, "chatd finds messages by msgid only")
        req["before" if sub == "BEFORE" else "since"] = int(ref[6:])
    conn.ask(Ask("CHATHISTORY", target), req)


def _bad_history(conn, sub: str, why: str) -> None:
    conn.send(line("FAIL", "CHATHISTORY", "INVALID_PARAMS", sub, why, source=conn.server.name))


COMMANDS = {
    "CAP": cap, "NICK": nick, "USER": user, "PASS": pass_, "AUTHENTICATE": authenticate,
    "PING": ping, "PONG": pong, "QUIT": quit_,
    "JOIN": join, "PART": part, "PRIVMSG": privmsg, "NOTICE": notice, "TAGMSG": tagmsg,
    "NAMES": names,
    "TOPIC": topic, "LIST": list_, "KICK": kick, "INVITE": invite, "MODE": mode,
    "WHO": who, "WHOIS": whois, "AWAY": away, "ISON": ison, "USERHOST": userhost,
    "LUSERS": lusers, "MOTD": motd, "CHATHISTORY": chathistory, "KILL": kill,
    "WALLOPS": wallops, "WHOWAS": whowas, "VERSION": version, "TIME": time_,
}
