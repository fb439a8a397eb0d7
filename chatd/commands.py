"""Text-mode commands (``/join #room``) parsed into the JSON request schema."""

from chatd.errors import ChatError

HELP_LINES = [
    "/nick NAME            choose or change your nick",
    "/join #room           join a room (or switch to it); plain lines go to it",
    "/part [#room] [why]   leave a room (default: the current one)",
    "/msg NICK text        private message",
    "/me text              action in the current room",
    "/who [#room]          who is in a room",
    "/rooms                list rooms",
    "/json                 switch this connection to JSON lines (for scripts)",
    "/ping                 check the server answers",
    "/help                 this list",
    "/quit [reason]        leave",
    "a line starting with // sends the rest beginning with /",
]

# command -> (request type, argument names; the last one takes the rest of the line)
_COMMANDS = {
    "nick": ("nick", ("nick",), 1),
    "join": ("join", ("room",), 1),
    "part": ("part", ("room", "reason"), 0),
    "leave": ("part", ("room", "reason"), 0),
    "msg": ("private", ("to", "text"), 2),
    "me": ("action", ("text",), 1),
    "who": ("who", ("room",), 0),
    "names": ("who", ("room",), 0),
    "rooms": ("rooms", (), 0),
    "list": ("rooms", (), 0),
    "help": ("help", (), 0),
    "ping": ("ping", (), 0),
    "pong": ("pong", (), 0),
    "quit": ("quit", ("reason",), 0),
    "json": ("json", (), 0),
}

_USAGE = {
    "nick": "/nick NAME",
    "join": "/join #room",
    "msg": "/msg NICK text",
    "me": "/me text",
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
    if kind == "part" and rest and not rest.startswith("#"):
        # "/part bye" leaves the current room with a reason
        req["reason"] = rest
        return req
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
    return req
