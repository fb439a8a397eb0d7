"""What an ``ack`` carries for each request: one typed record per answer.

A record's JSON is its fields by name, leaving out those that are None, so an
optional field (``more``, ``queued``, a topic's ``by``) appears only when it
says something.  Text rendering lives in ``chatd.text``.
"""

from dataclasses import dataclass

from chatd.events import field_names


class AckData:
    __slots__ = ()

    def to_dict(self) -> dict:
        d = {}
        for name in field_names(type(self)):
            value = getattr(self, name)
            if value is not None:
                d[name] = value
        return d


@dataclass(frozen=True, slots=True)
class NickAck(AckData):
    nick: str


@dataclass(frozen=True, slots=True)
class JoinAck(AckData):
    room: str
    nicks: list | None  # None in a large room (chatd.notices): see members
    topic: str | None = None
    more: bool | None = None  # True when there is more history than was sent
    members: int | None = None  # how many are in a large room, joiner included
    large: bool | None = None  # True: joins and parts here are not announced


@dataclass(frozen=True, slots=True)
class RoomAck(AckData):
    """part"""
    room: str


@dataclass(frozen=True, slots=True)
class MessageAck(AckData):
    room: str
    mid: int
    ts: float


@dataclass(frozen=True, slots=True)
class PrivateAck(AckData):
    to: str
    mid: int
    ts: float
    queued: bool | None = None  # True: the recipient is offline, the message waits


@dataclass(frozen=True, slots=True)
class WhoAck(AckData):
    room: str
    nicks: list  # a small room's all, in order of joining; else a page in nick order
    members: int | None = None  # with a page: how many are there in all
    more: bool | None = None  # True: more after the page's last nick (ask with "after")


@dataclass(frozen=True, slots=True)
class RoomsAck(AckData):
    rooms: list  # [{"room": name, "members": n}], by name
    more: bool | None = None  # True: more rooms after the last, ask with "after"


@dataclass(frozen=True, slots=True)
class HelpAck(AckData):
    lines: list


@dataclass(frozen=True, slots=True)
class EmptyAck(AckData):
    """ping"""


@dataclass(frozen=True, slots=True)
class QuitAck(AckData):
    reason: str


@dataclass(frozen=True, slots=True)
class ModeSwitchAck(AckData):
    """json: the connection now speaks JSON lines"""
    mode: str


@dataclass(frozen=True, slots=True)
class HistoryAck(AckData):
    room: str
    count: int
    more: bool
    first: int | None = None
    last: int | None = None


@dataclass(frozen=True, slots=True)
class AccountAck(AckData):
    """register and password"""
    nick: str
    token: str | None = None  # a new resume token (chatd.accounts)
    token_expires: float | None = None


@dataclass(frozen=True, slots=True)
class LoginAck(AckData):
    """login and resume"""
    nick: str
    offline: int  # private messages that waited for this login
    token: str | None = None  # a new resume token; a resume spent the old one
    token_expires: float | None = None


@dataclass(frozen=True, slots=True)
class LogoutAck(AckData):
    nick: str  # the guest nick the session now has


@dataclass(frozen=True, slots=True)
class TopicAck(AckData):
    room: str
    topic: str
    by: str | None = None
    ts: float | None = None

    @classmethod
    def of(cls, name: str, state) -> "TopicAck":
        if state is None or not state.topic:
            return cls(name, "")
        return cls(name, state.topic, state.topic_by, state.topic_ts)


@dataclass(frozen=True, slots=True)
class KickAck(AckData):
    room: str
    nick: str


@dataclass(frozen=True, slots=True)
class BanAck(AckData):
    """ban and unban"""
    room: str
    nick: str
    bans: list


@dataclass(frozen=True, slots=True)
class OpAck(AckData):
    """op and deop"""
    room: str
    nick: str


@dataclass(frozen=True, slots=True)
class ModeAck(AckData):
    room: str
    invite_only: bool
    password: bool


@dataclass(frozen=True, slots=True)
class KeepAck(AckData):
    """keep and unkeep"""
    room: str
    kept: bool


@dataclass(frozen=True, slots=True)
class AwayAck(AckData):
    """away: ``text`` is the away message, or None: back"""
    away: bool
    text: str | None = None


@dataclass(frozen=True, slots=True)
class InviteAck(AckData):
    room: str
    nick: str


# -- server operators (chatd.operators) ------------------------------------------------
@dataclass(frozen=True, slots=True)
class WallAck(AckData):
    sent: int  # sessions the notice went to


@dataclass(frozen=True, slots=True)
class KillAck(AckData):
    nick: str


@dataclass(frozen=True, slots=True)
class GbanAck(AckData):
    kind: str  # nick, account or addr
    target: str
    until: float  # 0: permanent
    dropped: int  # sessions the ban closed at once


@dataclass(frozen=True, slots=True)
class UngbanAck(AckData):
    kind: str
    target: str


@dataclass(frozen=True, slots=True)
class GbansAck(AckData):
    bans: list  # [{"kind", "target", "until", "by", "reason", "created"}]


@dataclass(frozen=True, slots=True)
class SessionsAck(AckData):
    sessions: list  # [{"nick", "address", "front_end", "rooms", "idle"}], by nick
    total: int  # sessions connected (the list stops at 1000)
