"""JSON requests: text to a request dict, strictly, for every front end that speaks JSON.

Strict means what other JSON parsers accept and our own output can carry:
no NaN or Infinity, no number too long to read, no string that is half a
surrogate pair, no nesting deeper than a request ever needs.
"""

import json
import math
import re

from chatd.errors import ChatError

# A request is a flat object; its deepest legitimate value is a level or two
# down.  Deeper input is refused before Python's recursive decoder meets it.
MAX_DEPTH = 32


def _not_a_number(text):
    # Python reads NaN, Infinity and 1e999, but they are not JSON: echoed back in
    # an id, they would make our own output unreadable to every other parser.
    raise ChatError("invalid_json", f"not valid JSON: {text[:20]} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        _not_a_number(text)
    return value


_decode = json.JSONDecoder(parse_constant=_not_a_number, parse_float=_finite).decode


def parse_json_request(text: str) -> dict:
    if _too_deep(text):
        raise ChatError("invalid_json", f"not valid JSON here: nested deeper than {MAX_DEPTH}")
    try:
        req = _decode(text)
    except json.JSONDecodeError as e:
        raise ChatError("invalid_json", f"not valid JSON: {e.msg} at column {e.colno}")
    except RecursionError:
        raise ChatError("invalid_json", f"not valid JSON here: nested deeper than {MAX_DEPTH}")
    except ValueError:
        # int() refuses more than sys.get_int_max_str_digits() digits.
        raise ChatError("invalid_json", "not valid JSON: a number too long to read")
    if not isinstance(req, dict):
        raise ChatError("bad_request", "a request is a JSON object with a \"type\"")
    if _SURROGATE_ESCAPE.search(text):
        # A lone "\udc80" decodes to a str that cannot be encoded again: it would
        # fail later in the store or in our own JSON output, far from its sender.
        if not _encodable(req):
            rid = req.get("id")
            raise ChatError("invalid_text", "strings must be valid Unicode: a \\u escape "
                            "of half a surrogate pair is not",
                            rid if _encodable(rid) else None)
    return req


def _encodable(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Only an escape can smuggle a surrogate in (the line is already valid UTF-8),
# so the full check runs only for input that has one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _too_deep(text: str) -> bool:
    """Whether brackets nest past MAX_DEPTH (a cheap over-estimate: brackets
    inside strings count too, which only matters for absurd input)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch in "]}":
            depth -= 1
    return False
