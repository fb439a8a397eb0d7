"""Text-mode commands (``/join #room``) parsed into the JSON request schema."""

from chatd.errors import ChatError

# command -> (request type, argument names; the last one takes the rest of the line)
_COMMANDS = {
    "nick": ("nick", ("nick",), 1),
    "join": ("join", ("room", "password"), 1),
    "part": ("part", ("room", "reason"), 0),
    "leave": ("part", ("room", "reason"), 0),
    "msg": ("private", ("to", "text"), 2),
    "me": ("action", ("text",), 1),
    "away": ("away", ("text",), 0),
    "who": ("who", ("room", "after"), 0),
    "names": ("who", ("room", "after"), 0),
    "rooms": ("rooms", ("after",), 0),
    "list": ("rooms", ("after",), 0),
    "help": ("help", (), 0),
    "ping": ("ping", (), 0),
    "pong": ("pong", (), 0),
    "quit": ("quit", ("reason",), 0),
    "json": ("json", (), 0),
    "history": ("history", ("room", "before", "limit"), 0),
    "register": ("register", ("password",), 1),
    "login": ("login", ("nick", "password"), 2),
    "resume": ("resume", ("nick", "token"), 2),
    "logout": ("logout", (), 0),
    "password": ("password", ("old", "new"), 2),
    "topic": ("topic", ("room", "topic"), 0),
    "kick": ("kick", ("room", "nick", "reason"), 2),
    "ban": ("ban", ("room", "nick"), 2),
    "unban": ("unban", ("room", "nick"), 2),
    "op": ("op", ("room", "nick"), 2),
    "deop": ("deop", ("room", "nick"), 2),
    "invite": ("invite", ("nick", "room"), 1),
    "mode": ("mode", ("room", "flag", "password"), 2),
    "keep": ("keep", ("room",), 0),
    "unkeep": ("unkeep", ("room",), 0),
    # server operators
    "wall": ("wall", ("text",), 1),
    "kill": ("kill", ("nick", "reason"), 1),
    "gban": ("gban", ("target", "duration", "reason"), 2),
    "ungban": ("ungban", ("target",), 1),
    "gbans": ("gbans", (), 0),
    "sessions": ("sessions", (), 0),
}

# Commands whose leading #room may be left out to mean the current room.
_ROOM_OPTIONAL = frozenset({"part", "history", "topic", "kick", "ban", "unban", "op", "deop",
                           "mode", "keep", "unkeep"})

_USAGE = {
    "nick": "/nick NAME",
    "join": "/join #room",
    "msg": "/msg NICK text",
    "me": "/me text",
    "register": "/register PASSWORD",
    "login": "/login NICK PASSWORD",
    "resume": "/resume NICK TOKEN",
    "password": "/password OLD NEW",
    "kick": "/kick [#room] NICK [reason]",
    "ban": "/ban [#room] NICK",
    "unban": "/unban [#room] NICK",
    "op": "/op [#room] NICK",
    "deop": "/deop [#room] NICK",
    "invite": "/invite NICK [#room]",
    "mode": "/mode [#room] +i|-i|+k PASSWORD|-k",
    "wall": "/wall TEXT",
    "kill": "/kill NICK [reason]",
    "gban": "/gban nick:NAME|account:NAME|addr:CIDR DURATION [reason]",
    "ungban": "/ungban nick:NAME|account:NAME|addr:CIDR",
}


def parse(line: str) -> dict | None:
    """One text-mode line to a request dict; None for a blank line."""
    if not line.strip():
        return None
    if not line.startswith("/"):
        return {"type": "message", "text": line}
    if line.startswith("//"):
        return {"type": "message", "text": line[1:]}
    word, _, rest = line[1:].partition(" ")
    name = word.lower()
    spec = _COMMANDS.get(name)
    if spec is None:
        raise ChatError("unknown_command", f"unknown command /{word}; /help lists commands")
    kind, args, required = spec
    req = {"type": kind}
    rest = rest.strip()
    if kind in _ROOM_OPTIONAL and not rest.startswith("#"):
        # "/part bye", "/kick bob": the current room
        args = args[1:]
        required = max(0, required - 1)
    for i, arg in enumerate(args):
        if not rest:
            break
        if i == len(args) - 1:
            req[arg], rest = rest, ""
        else:
            value, _, rest = rest.partition(" ")
            req[arg] = value
            rest = rest.strip()
    if sum(1 for a in args if a in req) < required:
        raise ChatError("missing_argument", f"usage: {_USAGE.get(name, '/' + name)}")
    if kind == "mode":
        _mode_flags(req)
    return req


def _mode_flags(req: dict) -> None:
    """``+i``/``-i``/``+k PASS``/``-k`` into the JSON fields of a mode request."""
    flag = req.pop("flag")
    password = req.pop("password", None)
    if flag in ("+i", "-i") and password is None:
        req["invite_only"] = flag == "+i"
    elif flag == "+k" and password:
        req["password"] = password
    elif flag == "-k" and password is None:
        req["password"] = ""
    else:
        raise ChatError("missing_argument", f"usage: {_USAGE['mode']}")
