"""The configuration file (``--config FILE``, TOML) and the message of the day.

A key is an option's long name and takes the value the option would, typed:
``max-per-ip = 50``, ``rate = 2.5``, ``name = "chat"``; a repeatable option
takes a list, ``line = ["tcp:9000", "tls:6697"]``.  The file only fills in
what the command line did not say, and every value then goes through the
same checks as the command line's (``chatd.tap.Options.postOptions``, which
builds ``Limits``), so there is one definition of a valid setting.  An error
names the file, the key and the problem.

The schema is read off the Options class itself (its ``optParameters`` and
its one-argument ``opt_*`` methods), so a new option is a new key with no
change here.
"""

import difflib
import re
import tomllib

from twisted.python import usage

from chatd.validate import CONTROL_RE

# Options that make no sense inside the file.
NOT_IN_FILE = frozenset({"config", "help", "version"})

MOTD_MAX_BYTES = 4096


class ConfigError(usage.UsageError):
    """A configuration file cannot be used; the message names the file and key."""


def schema(options: usage.Options) -> dict:
    """Key -> its type: ``int``, ``float``, ``str`` or ``list`` (a repeatable option)."""
    kinds = {}
    for long, _short, _default, _doc, *coerce in options.optParameters:
        kinds[long] = coerce[0] if coerce and coerce[0] in (int, float) else str
    for name in dir(options):
        if name.startswith("opt_"):
            kinds[name[4:].replace("_", "-")] = list
    for name in NOT_IN_FILE:
        kinds.pop(name, None)
    return kinds


def read(path: str) -> dict:
    """The file's table of settings, or ConfigError saying why not."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return table


def _typed(kind, value):
    """``value`` as ``kind``, or None if it is not one."""
    if isinstance(value, bool):
        return None  # TOML booleans are not numbers, whatever Python thinks
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    if kind is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None
    return value if isinstance(value, kind) else None


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string",
               list: "a list of strings"}


def apply(options: usage.Options, path: str, given: set) -> set:
    """Set every option the file names and ``given`` (the command line) does not.

    Repeatable options go through their ``opt_*`` method, item by item, so
    their own checks run.  Returns the keys taken from the file.
    """
    kinds = schema(options)
    taken = set()
    for key, value in read(path).items():
        kind = kinds.get(key)
        if kind is None:
            close = difflib.get_close_matches(key, kinds, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}: {key}: unknown key{hint}")
        typed = _typed(kind, value)
        if typed is None:
            raise ConfigError(f"{path}: {key}: must be {_KIND_NAMES[kind]}, "
                              f"not {type(value).__name__}")
        if key in given:
            continue  # the command line wins
        if kind is list:
            handler = getattr(options, "opt_" + key.replace("-", "_"))
            for item in typed:
                try:
                    handler(item)
                except usage.UsageError as e:
                    raise ConfigError(f"{path}: {key}: {e}") from None
        else:
            options[key] = typed
        taken.add(key)
    return taken


def blame(error: usage.UsageError, path: str, taken: set) -> usage.UsageError:
    """The validation error, naming the file and key when the value came from the file.

    The checks are the command line's own (one definition of a valid setting);
    their messages name the option as ``--max-per-ip`` or ``max_per_ip``.
    """
    message = str(error)
    for key in sorted(taken):
        if re.search(rf"(?<![\w-])(--{re.escape(key)}|{re.escape(key.replace('-', '_'))})"
                     r"(?![\w-])", message):
            return ConfigError(f"{path}: {key}: {message}")
    return error


def read_motd(path: str) -> tuple[str, ...]:
    """The message of the day's lines: UTF-8 text, at most 4 KiB, no control characters."""
    try:
        with open(path, "rb") as f:
            data = f.read(MOTD_MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the MOTD: {e.strerror or e}") from None
    if len(data) > MOTD_MAX_BYTES:
        raise ConfigError(f"{path}: the MOTD is longer than {MOTD_MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the MOTD is not UTF-8") from None
    lines = text.rstrip("\n").split("\n") if text.strip() else []
    # Each line is shown as chat text is: the same rule for control characters
    # (a CR before a newline is accepted and dropped above).
    for number, line in enumerate(lines, 1):
        # ... and no tab either: clients would lay it out each their own way.
        bad = CONTROL_RE.search(line) or re.search("\t", line)
        if bad:
            raise ConfigError(f"{path}: line {number}: control character "
                              f"U+{ord(bad.group()):04X} in the MOTD")
    return tuple(lines)
