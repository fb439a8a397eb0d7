"""IRC lines: parsing (IRCv3 tags included), formatting, and splitting long text.

A line is at most 512 bytes with its CRLF, not counting the tags; text longer
than one line allows is split on character boundaries, never cut.
"""

from dataclasses import dataclass, field

MAX_LINE = 512  # bytes, CRLF included, tags excluded (RFC 1459 2.3)
MAX_TAGS = 8191  # bytes of tags a client may send (IRCv3 message-tags)

_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPE = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})


class ParseError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class IrcLine:
    command: str
    params: tuple = ()
    tags: dict = field(default_factory=dict)
    source: str | None = None


def _unescape(value: str) -> str:
    out = []
    it = iter(value)
    for ch in it:
        if ch == "\\":
            nxt = next(it, "")
            out.append(_UNESCAPE.get(nxt, nxt))
        else:
            out.append(ch)
    return "".join(out)


def escape_tag(value: str) -> str:
    return value.translate(_ESCAPE)


def parse(line: str) -> IrcLine | None:
    """One IRC line (without its line ending); None for a blank line."""
    tags = {}
    rest = line.lstrip(" ")
    if rest.startswith("@"):
        raw, _, rest = rest[1:].partition(" ")
        for item in raw.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = _unescape(value)
        rest = rest.lstrip(" ")
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    if not rest:
        if tags or source:
            raise ParseError("a line needs a command")
        return None
    params = []
    command, _, rest = rest.partition(" ")
    while rest:
        rest = rest.lstrip(" ")
        if rest.startswith(":"):
            params.append(rest[1:])
            break
        if not rest:
            break
        param, _, rest = rest.partition(" ")
        params.append(param)
    return IrcLine(command.upper(), tuple(params), tags, source)


def line(command: str, *params, source: str | None = None, tags: dict | None = None,
         trail: bool = False) -> str:
    """A line without its CRLF; the last parameter is sent as trailing when it must
    be, or always with ``trail`` (text: what clients expect)."""
    parts = []
    if tags:
        parts.append("@" + ";".join(k if v is None or v == "" else f"{k}={escape_tag(v)}"
                                    for k, v in tags.items()))
    if source:
        parts.append(":" + source)
    parts.append(command)
    if params:
        *middle, last = (str(p) for p in params)
        parts.extend(middle)
        if trail or not last or last.startswith(":") or " " in last:
            last = ":" + last
        parts.append(last)
    return " ".join(parts)


def split_text(text: str, budget: int) -> list:
    """``text`` in pieces of at most ``budget`` UTF-8 bytes, split between
    characters (at a space when one is near the end of a piece)."""
    data = text.encode("utf-8")
    if len(data) <= budget:
        return [text]
    budget = max(budget, 4)  # room for one character, whatever it is
    pieces = []
    while len(data) > budget:
        cut = budget
        while cut > 0 and (data[cut] & 0xC0) == 0x80:  # inside a character
            cut -= 1
        space = data.rfind(b" ", cut * 3 // 4, cut)
        if space > 0:
            cut = space + 1
        pieces.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    if data:
        pieces.append(data.decode("utf-8"))
    return pieces
