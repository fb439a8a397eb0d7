"""The 005 (ISUPPORT) tokens, computed from chatd's real limits."""

from chatd.moderation import MAX_ROOM_PASSWORD, MAX_TOPIC
from chatd.store import MAX_PAGE

# chatd's room modes: a list (b: bans), a key (k), and a flag (i).  Operators
# are the one prefix: chatd has no voice or half-operators.
CHANMODES = "b,k,,i"
PREFIX = "(o)@"


def tokens(service, network: str) -> list:
    lim = service.limits
    return [
        "AWAYLEN=200",
        "CASEMAPPING=ascii",  # nicks and rooms are ASCII, compared case-insensitively
        f"CHANLIMIT=#:{lim.max_rooms_per_session}",
        f"CHANMODES={CHANMODES}",
        f"CHANNELLEN={lim.max_room}",
        "CHANTYPES=#",
        f"CHATHISTORY={MAX_PAGE}",
        f"KEYLEN={MAX_ROOM_PASSWORD}",
        "KICKLEN=200",
        "MAXLIST=b:100",
        "MODES=1",
        f"NETWORK={network}",
        f"NICKLEN={lim.max_nick}",
        f"PREFIX={PREFIX}",
        "TARGMAX=JOIN:,PART:,PRIVMSG:4,NOTICE:4,NAMES:1,WHOIS:1,KICK:1",
        f"TOPICLEN={MAX_TOPIC}",
    ]


def lines(service, network: str, per_line: int = 13) -> list:
    """The tokens in groups, one 005 line each (a line carries at most 13)."""
    toks = tokens(service, network)
    return [toks[i:i + per_line] for i in range(0, len(toks), per_line)]
