"""Structured logs: one JSON object per line, for log shippers.

The default stays twistd's readable text.  JSON comes two ways:

* ``twistd -n chatd --log-format json``: ``makeService`` returns a
  ``chatd.loglevel.LevelledTop``, which, when twistd makes it the application's
  child, sets the application's ``ILogObserver`` component (behind the
  ``--log-level`` filter).  twistd looks for that
  component before it builds its own observer, so the JSON observer replaces
  the text one instead of running beside it, writing where twistd would have
  (``--logfile``, rotated the same way, or stdout with ``-n`` and no logfile).
* ``twistd --logger chatd.logs.json_observer -n chatd``: twistd's own hook for
  a log observer factory; it writes to stdout (the journal, under systemd).

Each line has ``timestamp`` (ISO 8601, UTC), ``time`` (UNIX), ``level``,
``namespace``, ``event`` (the formatted message) and the event's own fields
(``session``, ``nick``, ``room``, ``peer``, ``code``...): whatever the code
logged as a keyword.  Nothing else is added, so what must never be logged
(message texts, passwords) stays out as long as no call logs it: the modules
log texts only through ``chatd.validate.loggable`` for reasons, and never a
message or a password (tests/integration/test_json_logs.py checks).
"""

import json
import sys
import time

from twisted.logger import FileLogObserver, formatEvent

FORMATS = ("text", "json")

# Keys of an event that are Twisted's bookkeeping (or the legacy log's), not fields.
_INTERNAL = frozenset({"message", "format", "isError", "time", "why", "failure",
                       "printed", "log_failure"})
# A field value longer than this is cut: a log line stays a line.
MAX_FIELD = 500


def _field(value):
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:MAX_FIELD]
    if isinstance(value, (list, tuple, set, frozenset)) and len(value) <= 50:
        return [_field(v) for v in value]
    return str(value)[:MAX_FIELD]


def event_as_dict(event: dict) -> dict:
    """The JSON object one log event becomes."""
    ts = event.get("log_time") or time.time()
    level = event.get("log_level")
    out = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
        + f".{int(ts % 1 * 1000):03d}Z",
        "time": round(ts, 6),
        "level": level.name if level is not None else "info",
        "namespace": event.get("log_namespace", ""),
        "event": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _INTERNAL or key in out:
            continue
        out[key] = _field(value)
    failure = event.get("log_failure")
    if failure is not None:
        out["level"] = "critical" if out["level"] == "critical" else "error"
        out["error"] = _field(f"{failure.type.__name__}: {failure.getErrorMessage()}")
        out["traceback"] = failure.getTraceback()
    return out


def format_json(event: dict) -> str:
    return json.dumps(event_as_dict(event), ensure_ascii=False, default=str) + "\n"


def json_file_observer(out) -> FileLogObserver:
    """An observer writing one JSON object per line to the file object ``out``."""
    return FileLogObserver(out, format_json)


def json_observer() -> FileLogObserver:
    """For ``twistd --logger chatd.logs.json_observer``: JSON lines on stdout."""
    return json_file_observer(sys.stdout)
