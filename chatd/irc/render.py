"""chatd events as IRC lines: encoded once per variant, never once per member.

A variant is the set of rendering capabilities a client enabled (server-time,
message-tags, account-tag, echo-message, away-notify) and the framing of its transport
(CRLF lines on TCP; IRC-B's WebSocket frames).  ``Formats.get`` hands every
session of one variant the same ``IrcFormat``, so a room's outlets (chatd.rooms)
group them and a broadcast is rendered once per variant present.

What differs per receiver is not encoded here; the payload says so and the
receiver's connection (chatd.irc.conn) finishes it:

* ``Authored``: a private message or an AWAY for a variant without
  echo-message; the sender's own connection drops it, everyone else writes it
  as is (a room message needs no such mark: the room leaves a sender without
  echo-message out of its broadcast, so room members write bytes straight to
  their output queue);
* ``Reply``: an event meant for one session that needs its nick or its
  state (answers, errors, notices, invites, history for a chathistory batch).

One function per event type (``RENDERERS``); an event type without one is
shown as a server NOTICE, so a new event never breaks an IRC client.
"""

import time

from chatd import events as ev
from chatd.irc.message import MAX_LINE, line, split_text

USER_HOST = "chatd"  # chatd shares no addresses: every user is nick!nick@chatd


def crlf(lines) -> bytes:
    return "".join(text + "\r\n" for text in lines).encode("utf-8")


def mask(nick: str) -> str:
    return f"{nick}!{nick}@{USER_HOST}"


def server_time(ts: float) -> str:
    secs = int(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + \
        f".{int((ts - secs) * 1000):03d}Z"


class Reply(bytes):
    """A payload for one session, finished by its connection (``.event``)."""

    def __new__(cls, event):
        obj = super().__new__(cls, b"\0")
        obj.event = event
        return obj


class Authored(bytes):
    """A message its sender does not get back (``.author``: the sender's nick key)."""

    def __new__(cls, data: bytes, author: str):
        obj = super().__new__(cls, data)
        obj.author = author
        return obj


class IrcFormat:
    """The wire format of one variant: ``event -> payload``."""

    def __init__(self, formats, caps: frozenset):
        self.formats = formats
        self.server = formats.server_name
        self.caps = caps
        self.frame = formats.framer
        self.echo = "echo-message" in caps
        self.time = "server-time" in caps
        self.msgid = "message-tags" in caps
        self.account = "account-tag" in caps
        self.away = "away-notify" in caps

    def __call__(self, event) -> bytes:
        render = RENDERERS.get(type(event))
        if render is None:
            return _unknown(self, event)
        return render(self, event)

    def __repr__(self) -> str:
        return f"<IrcFormat {','.join(sorted(self.caps)) or '-'}>"

    def tags(self, ts: float | None, mid=None, nick: str | None = None) -> dict | None:
        tags = {}
        if self.time and ts:
            tags["time"] = server_time(ts)
        if self.msgid and mid is not None:
            tags["msgid"] = str(mid)
        if self.account and nick is not None:
            account = self.formats.account_of(nick)
            if account is not None:
                tags["account"] = account
        return tags or None

    def text_lines(self, nick: str, command: str, target: str, text: str, tags,
                   action: bool = False) -> list:
        """``command`` lines carrying ``text``, split to fit the 512-byte limit."""
        source = mask(nick)
        head = len(line(command, target, "x", source=source, trail=True).encode("utf-8")) - 1
        budget = MAX_LINE - 2 - head - (9 if action else 0)
        out = []
        for piece in split_text(text, budget):
            if action:
                piece = f"\x01ACTION {piece}\x01"
            out.append(line(command, target, piece, source=source, tags=tags, trail=True))
        return out


# -- one function per event type -------------------------------------------------------
def _message(f: IrcFormat, e: ev.Message) -> bytes:
    if e.history:
        return Reply(e)  # into the receiver's chathistory batch, or plain
    # The same bytes for every member: a sender without echo-message is left out
    # of the broadcast by the room (ChatService.say), not here.
    return f.frame(f.text_lines(e.nick, "PRIVMSG", e.room, e.text,
                                f.tags(e.ts, e.mid, e.nick), e.kind == "action"))


def _private(f: IrcFormat, e: ev.Private) -> bytes:
    # chatd's private messages have no actions: an IRC /me arrives as "* nick text"
    # (chatd.irc.commands.privmsg), which IRC clients are shown as the ACTION it was.
    text, action = e.text, False
    prefix = f"* {e.nick} "
    if text.startswith(prefix) and len(text) > len(prefix):
        text, action = text[len(prefix):], True
    data = f.frame(f.text_lines(e.nick, "PRIVMSG", e.to, text, f.tags(e.ts, e.mid, e.nick),
                                action))
    if f.echo or e.offline or e.to.lower() == e.nick.lower():
        return data
    return Authored(data, e.nick.lower())


def _join(f, e: ev.Join) -> bytes:
    lines = [line("JOIN", e.room, source=mask(e.nick), tags=f.tags(e.ts, nick=e.nick))]
    if f.away:
        away = f.formats.away_of(e.nick)
        if away:  # away-notify: say at once that the newcomer is away
            lines.append(line("AWAY", away, source=mask(e.nick), trail=True))
    return f.frame(lines)


def _part(f, e: ev.Part) -> bytes:
    params = (e.room, e.reason) if e.reason else (e.room,)
    return f.frame([line("PART", *params, source=mask(e.nick), tags=f.tags(e.ts),
                         trail=bool(e.reason))])


def _presence(f, e: ev.Presence) -> bytes:
    """A storm's window (chatd.notices): a JOIN or PART for each nick it names, so
    the client's member list follows; those it only counts, in one NOTICE."""
    tags = f.tags(e.ts)
    lines = [line("JOIN", e.room, source=mask(nick), tags=tags) for nick in e.joined]
    lines += [line("PART", e.room, source=mask(nick), tags=tags) for nick in e.left]
    more = []
    if e.joins > len(e.joined):
        more.append(f"{e.joins - len(e.joined)} more joined")
    if e.parts > len(e.left):
        more.append(f"{e.parts - len(e.left)} more left")
    if more:
        lines.append(line("NOTICE", e.room, " and ".join(more) + " (/NAMES lists everyone)",
                          source=f.server, tags=tags, trail=True))
    return f.frame(lines)


def _nick(f, e: ev.NickChange) -> bytes:
    return f.frame([line("NICK", e.new, source=mask(e.old), tags=f.tags(e.ts))])


def _quit(f, e: ev.Quit) -> bytes:
    return f.frame([line("QUIT", e.reason or "Quit", source=mask(e.nick), tags=f.tags(e.ts),
                         trail=True)])


def _topic(f, e: ev.Topic) -> bytes:
    return f.frame([line("TOPIC", e.room, e.topic, source=mask(e.nick), tags=f.tags(e.ts),
                         trail=True)])


def _kick(f, e: ev.Kick) -> bytes:
    return f.frame([line("KICK", e.room, e.nick, e.reason or e.by, source=mask(e.by),
                         tags=f.tags(e.ts), trail=True)])


def _room_change(f, e: ev.RoomChange) -> bytes:
    if e.what == "mode":
        # The event carries the modes after the change, not the change itself.
        change = ("+" if e.invite_only else "-") + "i" + ("+" if e.password else "-") + "k"
        params = (change, "*")
    else:
        sign = "-" if e.what in ("unban", "deop") else "+"
        letter = "b" if e.what in ("ban", "unban") else "o"
        params = (sign + letter, f"{e.target}!*@*" if letter == "b" else e.target)
    return f.frame([line("MODE", e.room, *params, source=mask(e.by), tags=f.tags(e.ts))])


def _away(f, e: ev.Away) -> bytes:
    if not f.away:
        return b""
    params = (e.text,) if e.text else ()
    data = f.frame([line("AWAY", *params, source=mask(e.nick), tags=f.tags(e.ts),
                         trail=bool(e.text))])
    return Authored(data, e.nick.lower())  # the user knows: 305/306 said so


def _ping(f, e: ev.Ping) -> bytes:
    return f.frame([line("PING", f.server)])


def _bye(f, e: ev.Bye) -> bytes:
    return f.frame([line("ERROR", f"Closing link: {e.reason}", trail=True)])


def _for_one(f, e) -> bytes:
    return Reply(e)


def _unknown(f, e) -> bytes:
    room = getattr(e, "room", None)
    if not isinstance(room, str) or not room.startswith("#"):
        return Reply(e)  # the connection shows it as a NOTICE to its user
    return f.frame([line("NOTICE", room, describe(e), source=f.server, trail=True)])


def describe(e) -> str:
    """Readable text for an event IRC has no command for."""
    from chatd.text import render
    try:
        return render(e) or str(getattr(e, "type", "event"))
    except (KeyError, AttributeError, TypeError):
        return str(getattr(e, "type", type(e).__name__))


RENDERERS = {
    ev.Message: _message,
    ev.Private: _private,
    ev.Join: _join,
    ev.Part: _part,
    ev.Presence: _presence,
    ev.NickChange: _nick,
    ev.Quit: _quit,
    ev.Topic: _topic,
    ev.Kick: _kick,
    ev.RoomChange: _room_change,
    ev.Away: _away,
    ev.Ping: _ping,
    ev.Bye: _bye,
    ev.Hello: _for_one,
    ev.Notice: _for_one,
    ev.Invite: _for_one,
    ev.Ack: _for_one,
    ev.Error: _for_one,
}


class Formats:
    """The formats of one listener (one server name, one framing), one per variant."""

    def __init__(self, server_name: str, framer=crlf, account_of=None, metrics=None,
                 away_of=None):
        self.server_name = server_name
        self.framer = framer
        self.account_of = account_of or (lambda nick: None)
        self.away_of = away_of or (lambda nick: None)
        self.metrics = metrics  # chatd.metrics: each variant counts as the irc front end
        self._cache = {}

    def get(self, caps: frozenset) -> IrcFormat:
        fmt = self._cache.get(caps)
        if fmt is None:
            fmt = self._cache[caps] = IrcFormat(self, caps)
            if self.metrics is not None:
                self.metrics.add_format(fmt, "irc")
        return fmt
