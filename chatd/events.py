"""The events the service hands to front ends: one model for every wire format.

Events are plain, immutable data.  Each knows its JSON shape (``to_dict``),
which is the protocol's schema; how it reads as text is ``chatd.text``'s
business, and ``chatd.wire`` turns it into bytes once per format.
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


@dataclass(frozen=True, slots=True)
class Join(_Flat):
    type: ClassVar[str] = "join"
    room: str
    nick: str
    ts: float


@dataclass(frozen=True, slots=True)
class Part(_Flat):
    type: ClassVar[str] = "part"
    room: str
    nick: str
    reason: str
    ts: float


@dataclass(frozen=True, slots=True)
class Presence(_Flat):
    """Joins and parts of one room gathered over a short window (chatd.notices).

    ``joined`` and ``left`` list at most ``chatd.notices.LISTED`` nicks each, in
    order; ``joins`` and ``parts`` count them all.  A nick that came and went
    within the window is in neither (nor one that went and came back).
    """

    type: ClassVar[str] = "presence"
    room: str
    joined: tuple
    joins: int
    left: tuple
    parts: int
    ts: float

    def to_dict(self) -> dict:
        return {"type": self.type, "room": self.room, "joined": list(self.joined),
                "joins": self.joins, "left": list(self.left), "parts": self.parts,
                "ts": self.ts}


@dataclass(frozen=True, slots=True)
class NickChange(_Flat):
    type: ClassVar[str] = "nick"
    old: str
    new: str
    ts: float


@dataclass(frozen=True, slots=True)
class Quit(_Flat):
    type: ClassVar[str] = "quit"
    nick: str
    reason: str
    ts: float


@dataclass(frozen=True, slots=True)
class Topic(_Flat):
    type: ClassVar[str] = "topic"
    room: str
    topic: str
    nick: str
    ts: float


@dataclass(frozen=True, slots=True)
class Kick(_Flat):
    type: ClassVar[str] = "kick"
    room: str
    nick: str
    by: str
    reason: str
    ts: float


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


@dataclass(frozen=True, slots=True)
class Away(_Flat):
    """Someone sharing a room marked themselves away (``text``) or back (``""``)."""

    type: ClassVar[str] = "away"
    nick: str
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class Invite(_Flat):
    type: ClassVar[str] = "invite"
    room: str
    by: str


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to one request; ``data`` is its typed record (chatd.acks)."""

    type: ClassVar[str] = "ack"
    request: str
    id: Any = None
    data: Any = None

    def to_dict(self) -> dict:
        d = {"type": self.type, "request": self.request}
        if self.id is not None:
            d["id"] = self.id
        if self.data is not None:
            d.update(self.data.to_dict())
        return d


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


@dataclass(frozen=True, slots=True)
class Notice(_Flat):
    type: ClassVar[str] = "notice"
    text: str


@dataclass(frozen=True, slots=True)
class Ping(_Flat):
    type: ClassVar[str] = "ping"
    ts: float


@dataclass(frozen=True, slots=True)
class Bye(_Flat):
    """Sent just before the server closes a session, with the reason."""

    type: ClassVar[str] = "bye"
    reason: str
