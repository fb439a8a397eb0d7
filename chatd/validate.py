"""What a nick, a room name, chat text and a reason may be: one place for every rule.

Pure functions with no state, used by every owner of chat state, so a rule
is never written twice and no state module needs another to check input.
"""

import re

from chatd.errors import ChatError

NICK_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*\Z")
ROOM_RE = re.compile(r"#[A-Za-z0-9_\-.]+\Z")
# C0 and C1 controls (C1 too: terminals obey U+0085 NEL and U+009B CSI in UTF-8),
# DEL and the Unicode line separators would let one client forge lines on
# another's terminal or split a line for a client reading with splitlines().
CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
MAX_REASON = 200

# Characters that draw nothing: spaces, zero-width and format characters,
# variation selectors, fillers.  A message of only these (and combining marks)
# is empty to the eye, so it is refused as empty.
_INVISIBLE_RE = re.compile(
    "[\\s\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0]")
# Combining diacritics; more than MAX_MARKS stacked on one letter ("Zalgo" text)
# draw over the neighbouring lines in a client, so longer runs are clipped.
_MARKS = "\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
MAX_MARKS = 3
_MARK_RUN_RE = re.compile(f"([{_MARKS}]{{{MAX_MARKS}}})[{_MARKS}]+")
_MARK_RE = re.compile(f"[{_MARKS}]")

# Nicks are ASCII; these are the letters and digits people mistake for each other.
_SKELETON = str.maketrans({"i": "l", "1": "l", "|": "l", "0": "o"})
_SKELETON_PAIRS = (("rn", "m"), ("vv", "w"))


def clean_reason(reason: str | None) -> str:
    """A part/quit/kick reason made safe to show: controls become spaces, clipped."""
    if not reason:
        return ""
    reason = CONTROL_RE.sub(" ", str(reason))[:MAX_REASON].strip()
    return _MARK_RUN_RE.sub(r"\1", reason)  # broadcast to rooms, like a message


def loggable(text, limit: int = MAX_REASON) -> str:
    """Client-supplied text made safe for a log line: control characters (newlines,
    ANSI escapes, line separators) shown escaped, so no line can be forged, and clipped."""
    text = str(text)[:limit]
    return CONTROL_RE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def skeleton(nick_key: str) -> str:
    """What a (lower-case) nick looks like: ``aIice`` and ``alice``, ``vlctim`` and
    ``victim``, ``rnallory`` and ``mallory`` share one."""
    out = nick_key.translate(_SKELETON)
    for pair, letter in _SKELETON_PAIRS:
        out = out.replace(pair, letter)
    return out


def check_nick(nick, max_nick: int) -> str:
    """The nick's key (its lower-case form), or ``invalid_nick``."""
    if (not isinstance(nick, str) or not nick or len(nick) > max_nick
            or not NICK_RE.match(nick)):
        raise ChatError("invalid_nick",
                        f"a nick is 1-{max_nick} letters, digits, '_' or '-', "
                        "starting with a letter")
    return nick.lower()


def check_room(name, max_room: int) -> str:
    """The room's key (its lower-case form), or ``invalid_room``."""
    if not isinstance(name, str) or len(name) > max_room or not ROOM_RE.match(name):
        raise ChatError("invalid_room",
                        f"a room is '#' and 1-{max_room - 1} letters, digits, "
                        "'_', '-' or '.'")
    return name.lower()


def check_text(text, max_message: int) -> str:
    """Chat text as given, or the error a client should see for it."""
    if text is not None and not isinstance(text, str):
        raise ChatError("bad_request", "field 'text' must be a string")
    if not text or not text.strip():
        raise ChatError("empty_message", "nothing to send")
    if len(text) > max_message:
        raise ChatError("message_too_long",
                        f"a message is at most {max_message} characters")
    if CONTROL_RE.search(text):
        raise ChatError("invalid_text", "control characters are not allowed in messages")
    if not text.isascii():
        if not _MARK_RE.sub("", _INVISIBLE_RE.sub("", text)):
            raise ChatError("empty_message", "nothing to send: the message draws nothing")
        text = _MARK_RUN_RE.sub(r"\1", text)
    return text
