"""JSON requests: text to a request dict, strictly, for every front end that speaks JSON.

Strict means what other JSON parsers accept and our own output can carry:
no NaN or Infinity, no number too long to read, no string that is half a
surrogate pair, no nesting deeper than the parser's recursion limit (about a
thousand levels; a request needs two).
"""

import json
import math
import re

from chatd.errors import ChatError


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
    try:
        req = _decode(text)
    except json.JSONDecodeError as e:
        raise ChatError("invalid_json", f"not valid JSON: {e.msg} at column {e.colno}")
    except RecursionError:
        # The C decoder gives up cleanly at Python's recursion limit (a 2 KB line
        # of brackets): a refusal, not a dropped connection.
        raise ChatError("invalid_json", "not valid JSON here: nested too deep")
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
