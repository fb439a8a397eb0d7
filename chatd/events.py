"""The events the service hands to front ends: one model for every wire format.

Each event knows its JSON shape (``to_dict``) and its readable line (``to_text``);
``chatd.wire`` turns them into bytes once per format.
"""

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


class _Flat:
    """An event whose JSON is its type and its fields, as named."""

    __slots__ = ()

    def to_dict(self) -> dict:
        d = {"type": self.type}
        for f in fields(self):
            d[f.name] = getattr(self, f.name)
        return d


@dataclass(frozen=True, slots=True)
class Hello(_Flat):
    type: ClassVar[str] = "hello"
    server: str
    version: str
    limits: dict = field(default_factory=dict)

    def to_text(self) -> str:
        return (f"* Welcome to {self.server} {self.version}. Choose a nick with /nick NAME, "
                "join a room with /join #room, /help lists every command.")


@dataclass(frozen=True, slots=True)
class Message:
    """A room message; ``kind`` is ``message`` or ``action`` (``/me``)."""

    room: str
    nick: str
    text: str
    mid: int
    ts: float
    kind: str = "message"
    history: bool = False

    @property
    def type(self) -> str:
        return self.kind

    def to_dict(self) -> dict:
        d = {"type": self.kind, "room": self.room, "from": self.nick, "text": self.text,
             "mid": self.mid, "ts": self.ts}
        if self.history:
            d["history"] = True
        return d

    def to_text(self) -> str:
        prefix = "[history] " if self.history else ""
        if self.kind == "action":
            return f"{prefix}[{self.room}] * {self.nick} {self.text}"
        return f"{prefix}[{self.room}] <{self.nick}> {self.text}"


@dataclass(frozen=True, slots=True)
class Private:
    """A private message; ``offline`` when it waited in the store for a login."""

    type: ClassVar[str] = "private"
    nick: str
    to: str
    text: str
    mid: int
    ts: float
    offline: bool = False

    def to_dict(self) -> dict:
        d = {"type": self.type, "from": self.nick, "to": self.to, "text": self.text,
             "mid": self.mid, "ts": self.ts}
        if self.offline:
            d["offline"] = True
        return d

    def to_text(self) -> str:
        prefix = "[offline] " if self.offline else ""
        return f"{prefix}[pm {self.nick} -> {self.to}] {self.text}"


@dataclass(frozen=True, slots=True)
class Join(_Flat):
    type: ClassVar[str] = "join"
    room: str
    nick: str
    ts: float

    def to_text(self) -> str:
        return f"* {self.nick} joined {self.room}"


@dataclass(frozen=True, slots=True)
class Part(_Flat):
    type: ClassVar[str] = "part"
    room: str
    nick: str
    reason: str
    ts: float

    def to_text(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"* {self.nick} left {self.room}{why}"


@dataclass(frozen=True, slots=True)
class NickChange(_Flat):
    type: ClassVar[str] = "nick"
    old: str
    new: str
    ts: float

    def to_text(self) -> str:
        return f"* {self.old} is now known as {self.new}"


@dataclass(frozen=True, slots=True)
class Quit(_Flat):
    type: ClassVar[str] = "quit"
    nick: str
    reason: str
    ts: float

    def to_text(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"* {self.nick} quit{why}"


@dataclass(frozen=True, slots=True)
class Topic(_Flat):
    type: ClassVar[str] = "topic"
    room: str
    topic: str
    nick: str
    ts: float

    def to_text(self) -> str:
        if not self.topic:
            return f"* {self.nick} cleared the topic of {self.room}"
        return f"* {self.nick} set the topic of {self.room}: {self.topic}"


@dataclass(frozen=True, slots=True)
class Kick(_Flat):
    type: ClassVar[str] = "kick"
    room: str
    nick: str
    by: str
    reason: str
    ts: float

    def to_text(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"* {self.nick} was kicked from {self.room} by {self.by}{why}"


@dataclass(frozen=True, slots=True)
class RoomChange:
    """An operator changed the room: ``what`` is ban, unban, op, deop or mode."""

    room: str
    what: str
    by: str
    target: str = ""
    invite_only: bool = False
    password: bool = False
    ts: float = 0.0

    @property
    def type(self) -> str:
        return self.what

    def to_dict(self) -> dict:
        d = {"type": self.what, "room": self.room, "by": self.by, "ts": self.ts}
        if self.what == "mode":
            d["invite_only"] = self.invite_only
            d["password"] = self.password
        else:
            d["nick"] = self.target
        return d

    def to_text(self) -> str:
        if self.what == "mode":
            # The event carries the room's modes after the change, not the change.
            entry = "invite-only" if self.invite_only else "open to everyone"
            key = "with a password" if self.password else "without a password"
            return f"* {self.by} changed the modes of {self.room}: now {entry}, {key}"
        verb = {"ban": "banned", "unban": "unbanned", "op": "made an operator:",
                "deop": "removed operator:"}[self.what]
        return f"* {self.by} {verb} {self.target} in {self.room}"


@dataclass(frozen=True, slots=True)
class Invite(_Flat):
    type: ClassVar[str] = "invite"
    room: str
    by: str

    def to_text(self) -> str:
        return f"* {self.by} invites you to {self.room} (/join {self.room})"


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to one request; ``data`` holds what a query returns."""

    type: ClassVar[str] = "ack"
    request: str
    id: Any = None
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"type": self.type, "request": self.request}
        if self.id is not None:
            d["id"] = self.id
        d.update(self.data)
        return d

    def to_text(self) -> str:
        render = _ACK_TEXT.get(self.request)
        return render(self.data) if render else ""


@dataclass(frozen=True, slots=True)
class Error:
    type: ClassVar[str] = "error"
    code: str
    message: str
    id: Any = None
    request: str | None = None

    def to_dict(self) -> dict:
        d = {"type": self.type, "code": self.code, "message": self.message}
        if self.id is not None:
            d["id"] = self.id
        if self.request is not None:
            d["request"] = self.request
        return d

    def to_text(self) -> str:
        return f"! error {self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class Notice(_Flat):
    type: ClassVar[str] = "notice"
    text: str

    def to_text(self) -> str:
        return f"* {self.text}"


@dataclass(frozen=True, slots=True)
class Ping(_Flat):
    type: ClassVar[str] = "ping"
    ts: float

    def to_text(self) -> str:
        return "PING :are you there? (any line answers)"


@dataclass(frozen=True, slots=True)
class Bye(_Flat):
    """Sent just before the server closes a session, with the reason."""

    type: ClassVar[str] = "bye"
    reason: str

    def to_text(self) -> str:
        return f"* closing connection: {self.reason}"


# What a client shows of the conversation, received as JSON: the same lines the
# text mode of the line protocol writes (``chatd-cli follow`` uses this).
_CONVERSATION = {cls.type: cls for cls in (Join, Part, NickChange, Quit, Topic, Kick, Invite,
                                          Notice, Bye)}


def text_of(d: dict) -> str | None:
    """The text-mode line for a conversation event given as its JSON dict, else None."""
    kind = d.get("type")
    try:
        if kind in ("message", "action"):
            event = Message(d["room"], d["from"], d["text"], d["mid"], d["ts"], kind,
                            bool(d.get("history")))
        elif kind == "private":
            event = Private(d["from"], d["to"], d["text"], d["mid"], d["ts"],
                            bool(d.get("offline")))
        elif kind in _CONVERSATION:
            cls = _CONVERSATION[kind]
            event = cls(**{f.name: d[f.name] for f in fields(cls)})
        else:
            return None
    except (KeyError, TypeError):
        return None
    return event.to_text()


def _who_text(d: dict) -> str:
    return f"* {d['room']}: {len(d['nicks'])} present: {', '.join(d['nicks'])}"


def _rooms_text(d: dict) -> str:
    if not d["rooms"]:
        return "* no rooms yet; /join #name creates one"
    listing = ", ".join(f"{r['room']} ({r['members']})" for r in d["rooms"])
    return f"* rooms: {listing}"


def _help_text(d: dict) -> str:
    return "\r\n".join(f"* {line}" for line in d["lines"])


def _join_text(d: dict) -> str:
    lines = [f"* now talking in {d['room']}; members: {', '.join(d['nicks'])}"]
    if d.get("topic"):
        lines.append(f"* topic: {d['topic']}")
    if d.get("more"):
        lines.append("* more history than shown: /history " + d["room"])
    return "\r\n".join(lines)


def _history_text(d: dict) -> str:
    if not d["count"]:
        return f"* no earlier messages in {d['room']}"
    more = f"; older: /history {d['room']} {d['first']}" if d.get("more") else ""
    return f"* {d['count']} messages of {d['room']} history{more}"


def _private_text(d: dict) -> str:
    if d.get("queued"):
        return f"* {d['to']} is offline; your message is queued for their next login"
    return ""


def _topic_text(d: dict) -> str:
    if d.get("topic"):
        return f"* topic of {d['room']}: {d['topic']}"
    return f"* {d['room']} has no topic"


def _login_text(d: dict) -> str:
    waiting = d.get("offline", 0)
    extra = f"; {waiting} messages arrived while you were away" if waiting else ""
    return f"* you are logged in as {d['nick']}{extra}"


_ACK_TEXT = {
    "nick": lambda d: f"* you are now {d['nick']}",
    "join": _join_text,
    "part": lambda d: f"* you left {d['room']}",
    "who": _who_text,
    "rooms": _rooms_text,
    "help": _help_text,
    "json": lambda d: "",
    "ping": lambda d: "* pong",
    "quit": lambda d: "",
    "private": _private_text,
    "history": _history_text,
    "register": lambda d: f"* {d['nick']} is now registered to you; /login {d['nick']} "
                          "PASSWORD claims it next time",
    "login": _login_text,
    "password": lambda d: "* password changed",
    "topic": _topic_text,
    "kick": lambda d: "",
    "ban": lambda d: "",
    "unban": lambda d: "",
    "op": lambda d: "",
    "deop": lambda d: "",
    "mode": lambda d: "",
    "invite": lambda d: f"* invited {d['nick']} to {d['room']}",
}
