"""The events the service hands to front ends: one model for every wire format.

Each event knows its JSON shape (``to_dict``) and its readable line (``to_text``);
``chatd.wire`` turns them into bytes once per format.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Hello:
    type: ClassVar[str] = "hello"
    server: str
    version: str
    limits: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"type": self.type, "server": self.server, "version": self.version,
                "limits": self.limits}

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
    type: ClassVar[str] = "private"
    nick: str
    to: str
    text: str
    mid: int
    ts: float

    def to_dict(self) -> dict:
        return {"type": self.type, "from": self.nick, "to": self.to, "text": self.text,
                "mid": self.mid, "ts": self.ts}

    def to_text(self) -> str:
        return f"[pm {self.nick} -> {self.to}] {self.text}"


@dataclass(frozen=True, slots=True)
class Join:
    type: ClassVar[str] = "join"
    room: str
    nick: str
    ts: float

    def to_dict(self) -> dict:
        return {"type": self.type, "room": self.room, "nick": self.nick, "ts": self.ts}

    def to_text(self) -> str:
        return f"* {self.nick} joined {self.room}"


@dataclass(frozen=True, slots=True)
class Part:
    type: ClassVar[str] = "part"
    room: str
    nick: str
    reason: str
    ts: float

    def to_dict(self) -> dict:
        return {"type": self.type, "room": self.room, "nick": self.nick,
                "reason": self.reason, "ts": self.ts}

    def to_text(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"* {self.nick} left {self.room}{why}"


@dataclass(frozen=True, slots=True)
class NickChange:
    type: ClassVar[str] = "nick"
    old: str
    new: str
    ts: float

    def to_dict(self) -> dict:
        return {"type": self.type, "old": self.old, "new": self.new, "ts": self.ts}

    def to_text(self) -> str:
        return f"* {self.old} is now known as {self.new}"


@dataclass(frozen=True, slots=True)
class Quit:
    type: ClassVar[str] = "quit"
    nick: str
    reason: str
    ts: float

    def to_dict(self) -> dict:
        return {"type": self.type, "nick": self.nick, "reason": self.reason, "ts": self.ts}

    def to_text(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"* {self.nick} quit{why}"


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
class Notice:
    type: ClassVar[str] = "notice"
    text: str

    def to_dict(self) -> dict:
        return {"type": self.type, "text": self.text}

    def to_text(self) -> str:
        return f"* {self.text}"


@dataclass(frozen=True, slots=True)
class Ping:
    type: ClassVar[str] = "ping"
    ts: float

    def to_dict(self) -> dict:
        return {"type": self.type, "ts": self.ts}

    def to_text(self) -> str:
        return "PING :are you there? (any line answers)"


@dataclass(frozen=True, slots=True)
class Bye:
    """Sent just before the server closes a session, with the reason."""

    type: ClassVar[str] = "bye"
    reason: str

    def to_dict(self) -> dict:
        return {"type": self.type, "reason": self.reason}

    def to_text(self) -> str:
        return f"* closing connection: {self.reason}"


def _who_text(d: dict) -> str:
    return f"* {d['room']}: {len(d['nicks'])} present: {', '.join(d['nicks'])}"


def _rooms_text(d: dict) -> str:
    if not d["rooms"]:
        return "* no rooms yet; /join #name creates one"
    listing = ", ".join(f"{r['room']} ({r['members']})" for r in d["rooms"])
    return f"* rooms: {listing}"


def _help_text(d: dict) -> str:
    return "\r\n".join(f"* {line}" for line in d["lines"])


_ACK_TEXT = {
    "nick": lambda d: f"* you are now {d['nick']}",
    "join": lambda d: f"* now talking in {d['room']}; members: {', '.join(d['nicks'])}",
    "part": lambda d: f"* you left {d['room']}",
    "who": _who_text,
    "rooms": _rooms_text,
    "help": _help_text,
    "json": lambda d: "",
    "ping": lambda d: "* pong",
    "quit": lambda d: "",
}
