"""How events read as text: the line protocol's text mode, and ``chatd-cli``.

One renderer per event type and per ack record type.  ``render`` returns the
line(s) without the line ending, or "" when there is nothing to show.
"""

import time
from dataclasses import fields

from chatd import acks
from chatd import events as ev


def _why(reason: str) -> str:
    return f" ({reason})" if reason else ""


def _message(e: ev.Message) -> str:
    prefix = "[history] " if e.history else ""
    if e.kind == "action":
        return f"{prefix}[{e.room}] * {e.nick} {e.text}"
    return f"{prefix}[{e.room}] <{e.nick}> {e.text}"


def _private(e: ev.Private) -> str:
    prefix = "[offline] " if e.offline else ""
    return f"{prefix}[pm {e.nick} -> {e.to}] {e.text}"


def _topic(e: ev.Topic) -> str:
    if not e.topic:
        return f"* {e.nick} cleared the topic of {e.room}"
    return f"* {e.nick} set the topic of {e.room}: {e.topic}"


def _room_change(e: ev.RoomChange) -> str:
    if e.what == "mode":
        # The event carries the room's modes after the change, not the change.
        entry = "invite-only" if e.invite_only else "open to everyone"
        key = "with a password" if e.password else "without a password"
        return f"* {e.by} changed the modes of {e.room}: now {entry}, {key}"
    verb = {"ban": "banned", "unban": "unbanned", "op": "made an operator:",
            "deop": "removed operator:"}[e.what]
    return f"* {e.by} {verb} {e.target} in {e.room}"


def _some(nicks, total: int) -> str:
    """"alice", "alice and bob", "alice, bob and carol", "alice, bob, carol and 41 others"."""
    shown = list(nicks[:TEXT_NAMED]) if total > TEXT_NAMED + 1 else list(nicks[:total])
    rest = total - len(shown)
    if rest > 0:
        shown.append(f"{rest} other" if rest == 1 else f"{rest} others")
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " and " + shown[-1]


TEXT_NAMED = 3  # nicks a text-mode presence notice names before "and N others"


def _presence(e: ev.Presence) -> str:
    lines = []
    if e.joins:
        lines.append(f"* {_some(e.joined, e.joins)} joined {e.room}")
    if e.parts:
        lines.append(f"* {_some(e.left, e.parts)} left {e.room}")
    return "\r\n".join(lines)


_EVENTS = {
    ev.Hello: lambda e: (f"* Welcome to {e.server} {e.version}. Choose a nick with /nick NAME, "
                         "join a room with /join #room, /help lists every command."),
    ev.Message: _message,
    ev.Private: _private,
    ev.Join: lambda e: f"* {e.nick} joined {e.room}",
    ev.Part: lambda e: f"* {e.nick} left {e.room}{_why(e.reason)}",
    ev.Presence: _presence,
    ev.NickChange: lambda e: f"* {e.old} is now known as {e.new}",
    ev.Quit: lambda e: f"* {e.nick} quit{_why(e.reason)}",
    ev.Topic: _topic,
    ev.Kick: lambda e: f"* {e.nick} was kicked from {e.room} by {e.by}{_why(e.reason)}",
    ev.RoomChange: _room_change,
    ev.Invite: lambda e: f"* {e.by} invites you to {e.room} (/join {e.room})",
    ev.Away: lambda e: "",  # presence for clients that show it; text mode stays quiet
    ev.Error: lambda e: f"! error {e.code}: {e.message}",
    ev.Notice: lambda e: f"* {e.text}",
    ev.Ping: lambda e: "PING :are you there? (any line answers)",
    ev.Bye: lambda e: f"* closing connection: {e.reason}",
}


def render(event) -> str:
    return _EVENTS[type(event)](event)


# -- acks ------------------------------------------------------------------------------
def _join(d: acks.JoinAck) -> str:
    if d.large:
        lines = [f"* now talking in {d.room}; {d.members} members (a large room: joins and "
                 f"parts are not announced; /who {d.room} lists who is here)"]
    else:
        lines = [f"* now talking in {d.room}; members: {', '.join(d.nicks)}"]
    if d.topic:
        lines.append(f"* topic: {d.topic}")
    if d.more:
        lines.append("* more history than shown: /history " + d.room)
    return "\r\n".join(lines)


def _who(d: acks.WhoAck) -> str:
    if d.members is None:
        return f"* {d.room}: {len(d.nicks)} present: {', '.join(d.nicks)}"
    listing = f"* {d.room}: {d.members} present; {len(d.nicks)} here: {', '.join(d.nicks)}"
    if d.more:
        listing += f"\r\n* more: /who {d.room} {d.nicks[-1]}"
    return listing


def _rooms(d: acks.RoomsAck) -> str:
    if not d.rooms:
        return "* no rooms yet; /join #name creates one"
    listing = "* rooms: " + ", ".join(f"{r['room']} ({r['members']})" for r in d.rooms)
    if d.more:
        listing += f"\r\n* more rooms: /rooms {d.rooms[-1]['room']}"
    return listing


def _history(d: acks.HistoryAck) -> str:
    if not d.count:
        return f"* no earlier messages in {d.room}"
    more = f"; older: /history {d.room} {d.first}" if d.more else ""
    return f"* {d.count} messages of {d.room} history{more}"


def _topic_ack(d: acks.TopicAck) -> str:
    if d.topic:
        return f"* topic of {d.room}: {d.topic}"
    return f"* {d.room} has no topic"


def _token(d) -> str:
    # Shown so a text-mode user can /resume; it is theirs, like their password.
    if not d.token:
        return ""
    return f"\r\n* to log in again without the password: /resume {d.nick} {d.token}"


def _login(d: acks.LoginAck) -> str:
    extra = f"; {d.offline} messages arrived while you were away" if d.offline else ""
    return f"* you are logged in as {d.nick}{extra}{_token(d)}"


def _until(until: float) -> str:
    if not until:
        return "permanently"
    return "until " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until))


def _gbans(d: acks.GbansAck) -> str:
    if not d.bans:
        return "* no server bans"
    return "\r\n".join(
        f"* {b['kind']}:{b['target']} {_until(b['until'])} by {b['by']}{_why(b['reason'])}"
        for b in d.bans)


def _sessions(d: acks.SessionsAck) -> str:
    lines = [f"* {d.total} sessions"]
    for s in d.sessions:
        rooms = " ".join(s["rooms"]) or "-"
        lines.append(f"* {s['nick'] or '(no nick)'} {s['address']} {s['front_end']} "
                     f"rooms: {rooms} idle {s['idle']:g}s")
    return "\r\n".join(lines)


_ACKS = {
    acks.NickAck: lambda d: f"* you are now {d.nick}",
    acks.JoinAck: _join,
    acks.RoomAck: lambda d: f"* you left {d.room}",
    acks.WhoAck: _who,
    acks.RoomsAck: _rooms,
    acks.HelpAck: lambda d: "\r\n".join(f"* {line}" for line in d.lines),
    acks.EmptyAck: lambda d: "* pong",
    acks.PrivateAck: lambda d: (
        f"* {d.to} is offline; your message is queued for their next login"
        if d.queued else ""),
    acks.HistoryAck: _history,
    acks.LoginAck: _login,
    acks.LogoutAck: lambda d: f"* you are logged out; you are now {d.nick}",
    acks.TopicAck: _topic_ack,
    acks.WallAck: lambda d: f"* notice sent to {d.sent} sessions",
    acks.KillAck: lambda d: f"* {d.nick} was disconnected",
    acks.GbanAck: lambda d: (f"* banned {d.kind}:{d.target} {_until(d.until)}; "
                             f"{d.dropped} sessions dropped"),
    acks.UngbanAck: lambda d: f"* lifted the server ban on {d.kind}:{d.target}",
    acks.GbansAck: _gbans,
    acks.SessionsAck: _sessions,
    acks.InviteAck: lambda d: f"* invited {d.nick} to {d.room}",
    acks.AwayAck: lambda d: f"* you are away: {d.text}" if d.away else "* you are back",
    acks.KeepAck: lambda d: (
        f"* {d.room} is kept: its topic, operators, bans and modes stay when it empties"
        if d.kept else f"* {d.room} is no longer kept; it goes when its last member leaves"),
}


def _account(request: str, d: acks.AccountAck) -> str:
    if request == "register":
        return (f"* {d.nick} is now registered to you; /login {d.nick} PASSWORD claims it "
                f"next time{_token(d)}")
    return f"* password changed; your other resume tokens no longer work{_token(d)}"


def render_ack(event: ev.Ack) -> str:
    if isinstance(event.data, acks.AccountAck):
        return _account(event.request, event.data)
    render = _ACKS.get(type(event.data))
    return render(event.data) if render else ""


_EVENTS[ev.Ack] = render_ack


# -- a client's view: JSON back to the text-mode line ----------------------------------
_CONVERSATION = {cls.type: cls for cls in (ev.Join, ev.Part, ev.NickChange, ev.Quit, ev.Topic,
                                          ev.Kick, ev.Invite, ev.Notice, ev.Bye, ev.Presence)}


def text_of(d: dict) -> str | None:
    """The text-mode line for a conversation event given as its JSON dict, else None
    (``chatd-cli follow`` shows what a telnet user would see)."""
    kind = d.get("type")
    try:
        if kind in ("message", "action"):
            event = ev.Message(d["room"], d["from"], d["text"], d["mid"], d["ts"], kind,
                               bool(d.get("history")))
        elif kind == "private":
            event = ev.Private(d["from"], d["to"], d["text"], d["mid"], d["ts"],
                               bool(d.get("offline")))
        elif kind in _CONVERSATION:
            cls = _CONVERSATION[kind]
            event = cls(**{f.name: d[f.name] for f in fields(cls)})
        else:
            return None
    except (KeyError, TypeError):
        return None
    return render(event)
