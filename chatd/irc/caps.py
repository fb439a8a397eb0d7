"""IRCv3 capability negotiation (CAP LS 302, REQ, ACK/NAK, LIST, END) and SASL PLAIN.

Pure state: ``Caps`` answers each CAP subcommand with the lines to send and
says whether registration must wait; ``sasl_plain`` decodes a PLAIN payload.
"""

import base64
import binascii

# What chatd offers; the values are advertised with CAP LS 302.
SUPPORTED = {
    "account-tag": None,
    "away-notify": None,
    "batch": None,
    "draft/chathistory": None,
    "chathistory": None,
    "echo-message": None,
    "message-tags": None,
    "multi-prefix": None,
    "sasl": "PLAIN",
    "server-time": None,
}

# Capabilities that change how a broadcast is rendered (chatd.irc.render): the
# sessions sharing a set of these share one encoding of each event.
RENDERING = frozenset({"account-tag", "away-notify", "echo-message", "message-tags",
                       "server-time"})

HISTORY = frozenset({"draft/chathistory", "chathistory"})


class Caps:
    def __init__(self):
        self.enabled = set()
        self.negotiating = False  # CAP LS or REQ seen, END not yet: registration waits
        self.version = 301

    def rendering(self) -> frozenset:
        return frozenset(self.enabled & RENDERING)

    def has(self, name: str) -> bool:
        return name in self.enabled

    def history(self) -> bool:
        return bool(self.enabled & HISTORY)

    def ls(self, version: str | None) -> list:
        """The CAP LS reply parameters: one list per line ("*" continues)."""
        self.negotiating = True
        if version and version.isdigit():
            self.version = max(self.version, int(version))
        if self.version >= 302:
            self.enabled.add("cap-notify")  # implied by 302
            items = [k if v is None else f"{k}={v}" for k, v in SUPPORTED.items()]
        else:
            items = list(SUPPORTED)
        return [" ".join(sorted(items))]

    def req(self, wanted: str) -> tuple:
        """(acked, names): all of the request is taken, or none of it."""
        self.negotiating = True
        names = wanted.split()
        changes = []
        for name in names:
            off = name.startswith("-")
            cap = name[1:] if off else name
            if cap not in SUPPORTED:
                return False, wanted
            changes.append((cap, off))
        for cap, off in changes:
            if off:
                self.enabled.discard(cap)
            else:
                self.enabled.add(cap)
        return True, wanted

    def listing(self) -> str:
        return " ".join(sorted(self.enabled - {"cap-notify"}))

    def end(self) -> None:
        self.negotiating = False


class SaslError(ValueError):
    pass


def sasl_plain(payload: str) -> tuple:
    """(authcid, password) from a base64 PLAIN payload; authzid, if any, must match."""
    try:
        raw = base64.b64decode(payload, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise SaslError("not valid base64 UTF-8") from None
    parts = raw.split("\0")
    if len(parts) != 3 or not parts[1]:
        raise SaslError("PLAIN needs authzid NUL authcid NUL password")
    authzid, authcid, password = parts
    if authzid and authzid.lower() != authcid.lower():
        raise SaslError("logging in as someone else is not supported")
    return authcid, password
