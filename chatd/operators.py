"""Server operators: notices to everyone, dropping sessions, server-wide bans.

Who is a server operator is ``service.operators``, a set of lower-cased account
names the service holds and whoever configures it may replace whole (the
``--operator`` option today, a config file reloaded on SIGHUP later): this
module reads it at every request, never copies it.

``Operators`` is the only writer of the server bans.  They are held in memory
(loaded at start, like rooms) so that checking a connect, a login or a nick
change never waits for the store; a change is written to the store first and
applied in memory once stored, so an operator is never told a ban worked that
a restart would forget.  An expired ban is ignored wherever it is met and
forgotten (the store prunes its own at load).

Several nodes (``--redis``): a ban added or lifted here is told to the other
nodes (the bus's ``server_ban`` state), which apply it in memory and drop the
sessions it matches there; a kill of a nick held on another node is handed to
that node (``kill``), which drops it as a kill made there would.

Every operator action is logged with who, what and the target; the text of a
notice is not (it is a message like any other).
"""

import ipaddress
import re

from twisted.internet.defer import succeed
from twisted.logger import Logger

from chatd import acks
from chatd.errors import ChatError
from chatd.events import Notice
from chatd.store import BAN_KINDS, ServerBan
from chatd.validate import check_text, clean_reason, loggable

# The longest ban a duration may ask for; longer is a mistake (0 is permanent).
MAX_BAN_SECONDS = 10 * 365 * 86400
# A sessions answer lists at most this many (by nick); the ack gives the total.
SESSIONS_PAGE = 1000

_DURATION = re.compile(r"^(\d{1,9})([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value) -> float:
    """``10m``, ``2h``, ``7d``, ``3600`` (seconds) or an integer; 0 is permanent."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and _DURATION.match(value.strip().lower()):
        number, unit = _DURATION.match(value.strip().lower()).groups()
        seconds = int(number) * _UNITS[unit]
    else:
        raise ChatError("bad_request", "a duration is like 10m, 2h, 7d, or 0 for permanent")
    if not 0 <= seconds <= MAX_BAN_SECONDS:
        raise ChatError("bad_request", "a ban lasts at most 10 years (0: permanent)")
    return float(seconds)


def front_end(sink) -> str:
    """``line``, ``websocket`` or ``irc``: what a session connected with (for /sessions)."""
    name = type(sink).__name__.lower()
    for known in ("websocket", "line", "irc"):
        if known in name:
            return known
    return name


def _network(host):
    try:
        return ipaddress.ip_address(host)
    except (TypeError, ValueError):
        return None


class Operators:
    log = Logger()

    def __init__(self, service):
        # The service composes us; we use its public parts only (sessions, nicks,
        # accounts, drop, clock, store, operators).
        self.service = service
        self.bans = {}  # (kind, target) -> ServerBan; the only writer is this class
        self._networks = {}  # target -> ip_network, for the "addr" bans
        on_state = getattr(service.bus, "on_state", None)  # a cluster's bus
        if on_state is not None:
            on_state("server_ban", self._ban_elsewhere)
            on_state("kill", self._kill_here)

    # -- who may ---------------------------------------------------------------------
    def is_operator(self, session) -> bool:
        return session.account is not None and session.account in self.service.operators

    def require(self, session) -> "Operators":
        if not self.is_operator(session):
            self.log.warn("refused operator request from {nick} at {peer}: not an operator",
                          nick=session.nick, peer=session.host, code="not_server_operator")
            raise ChatError("not_server_operator",
                            "only server operators may do that (log in as one first)")
        return self

    # -- bans held in memory -----------------------------------------------------------
    def loaded(self, bans) -> None:
        for ban in bans:
            self._set(ban)

    def _set(self, ban: ServerBan) -> None:
        self.bans[(ban.kind, ban.target)] = ban
        if ban.kind == "addr":
            self._networks[ban.target] = ipaddress.ip_network(ban.target, strict=False)

    def _forget(self, kind: str, target: str) -> None:
        self.bans.pop((kind, target), None)
        if kind == "addr":
            self._networks.pop(target, None)

    def _in_force(self, kind: str, target: str) -> ServerBan | None:
        ban = self.bans.get((kind, target))
        if ban is not None and ban.expired(self.service.clock.seconds()):
            self._forget(kind, target)  # the store prunes its copy at the next load
            return None
        return ban

    def address_ban(self, host) -> ServerBan | None:
        address = _network(host)
        if address is None or not self._networks:
            return None
        for target, network in list(self._networks.items()):
            if address.version == network.version and address in network:
                ban = self._in_force("addr", target)
                if ban is not None:
                    return ban
        return None

    @staticmethod
    def refusal(ban: ServerBan) -> ChatError:
        until = "permanently" if ban.until == 0 else "for now"
        why = f": {ban.reason}" if ban.reason else ""
        return ChatError("banned_from_server", f"you are banned from this server {until}{why}")

    # -- checks the service calls ------------------------------------------------------
    def check_connect(self, host) -> None:
        ban = self.address_ban(host)
        if ban is not None:
            self.log.info("refused {peer}: server ban on {target}", peer=host,
                          target=ban.target, code="banned_from_server")
            raise self.refusal(ban)

    def check_nick(self, session, key: str) -> None:
        ban = self._in_force("nick", key)
        if ban is not None:
            self.log.info("refused nick {nick} from {peer}: server ban", nick=key,
                          peer=session.host, code="banned_from_server")
            raise self.refusal(ban)

    def check_login(self, session, account: str) -> None:
        ban = self._in_force("account", account) or self._in_force("nick", account)
        if ban is not None:
            self.log.info("refused login as {account} from {peer}: server ban",
                          account=account, peer=session.host, code="banned_from_server")
            raise self.refusal(ban)

    # -- actions: ``by`` names who asked (a nick, or "admin-api") ---------------------------
    def _logged(self, by, action, target, **fields) -> None:
        self.log.info("operator {operator} {action} {target}", operator=by, action=action,
                      target=target, **fields)

    def wall(self, by: str, text):
        text = check_text(text, self.service.limits.max_message)
        notice = Notice(f"[server notice from {by}] {text}")
        count = len(self.service.sessions)
        # Every session, named or not, whatever its front end: through the bus,
        # encoded once per wire format.
        self.service.bus.publish_all(notice)
        self._logged(by, "wall", "everyone", sessions=count, length=len(text))
        return succeed(acks.WallAck(count))

    def kill(self, by: str, nick, reason: str = ""):
        key = self.service.nicks.check(nick) if isinstance(nick, str) else None
        target = self.service.nicks.get(key) if key else None
        if target is None and key:
            # Perhaps on another node: that node drops it (none: not online).
            def handed(delivered):
                if not delivered:
                    raise ChatError("no_such_nick", f"{nick} is not online")
                self._logged(by, "kill", nick, node="another")
                return acks.KillAck(nick)
            return self.service.bus.publish_user_state(
                key, "kill", {"nick": key, "by": by, "reason": reason or ""}).addCallback(handed)
        if target is None:
            raise ChatError("no_such_nick", f"{nick} is not online")
        return self._kill(by, target, reason)

    def _kill_here(self, data) -> None:
        """Another node's operator killed a nick held here."""
        target = self.service.nicks.get(str(data.get("nick", "")))
        if target is not None:
            self._kill(str(data.get("by") or "an operator"), target,
                       str(data.get("reason") or "")).addErrback(
                lambda f: self.log.failure("a kill from another node failed", f))

    def _kill(self, by: str, target, reason: str):
        reason = clean_reason(reason or "")
        self._logged(by, "kill", target.nick, peer=target.host, reason=loggable(reason))
        account = target.account
        self.service.drop(target, f"killed by {by}" + (f": {reason}" if reason else ""))
        # Its resume tokens go too, or its client would be back at once.
        if account is None:
            return succeed(acks.KillAck(target.nick))
        return self.service.accounts.revoke_tokens(account, "killed").addCallback(
            lambda _: acks.KillAck(target.nick))

    def parse_target(self, target) -> tuple:
        """``nick:NAME``, ``account:NAME`` or ``addr:CIDR`` to (kind, normal target)."""
        if not isinstance(target, str) or ":" not in target:
            raise ChatError("bad_request", "a ban target is nick:NAME, account:NAME or "
                                           "addr:CIDR")
        kind, _, name = target.partition(":")
        kind = kind.lower()
        if kind not in BAN_KINDS:
            raise ChatError("bad_request", "a ban target is nick:NAME, account:NAME or "
                                           "addr:CIDR")
        if kind == "addr":
            try:
                return kind, str(ipaddress.ip_network(name.strip(), strict=False))
            except ValueError:
                raise ChatError("bad_request", f"{name!r} is not an address or range "
                                               "like 192.0.2.0/24") from None
        return kind, self.service.nicks.check(name.strip())

    def gban(self, by: str, target, duration, reason: str = ""):
        kind, name = self.parse_target(target)
        seconds = parse_duration(duration)
        now = self.service.clock.seconds()
        ban = ServerBan(kind, name, now + seconds if seconds else 0.0, by,
                        clean_reason(reason or ""), now)

        def stored(_):
            self._set(ban)
            self._tell({"op": "add", "kind": ban.kind, "target": ban.target,
                        "until": ban.until, "by": ban.by, "reason": ban.reason,
                        "created": ban.created})
            dropped = self._drop_matching(ban)
            self._logged(by, "gban", f"{kind}:{name}", until=ban.until, dropped=dropped,
                         reason=loggable(ban.reason))
            ack = acks.GbanAck(kind, name, ban.until, dropped)
            if kind == "addr":
                return ack  # an address ban refuses the resume itself, by address
            # A nick ban covers the account of that name (as at login).
            return self.service.accounts.revoke_tokens(name, "banned").addCallback(
                lambda _: ack)
        return self.service.store.add_server_ban(ban).addCallback(stored)

    def _tell(self, change: dict) -> None:
        publish = getattr(self.service.bus, "publish_state", None)  # a cluster's bus
        if publish is not None:
            publish("server_ban", change)

    def _ban_elsewhere(self, change) -> None:
        """Another node added or lifted a server ban (it is stored already): the
        same here, in memory, and the sessions a new ban matches are dropped."""
        try:
            kind, target = str(change["kind"]), str(change["target"])
            if kind not in BAN_KINDS:
                raise ValueError(kind)
            if change["op"] == "remove":
                self._forget(kind, target)
                return
            ban = ServerBan(kind, target, float(change["until"]), str(change["by"]),
                            str(change["reason"]), float(change["created"]))
            self._set(ban)
        except (KeyError, TypeError, ValueError) as e:
            self.log.warn("ignored a malformed server ban from another node: {error}",
                          error=repr(e))
            return
        self._drop_matching(ban)

    def _drop_matching(self, ban: ServerBan) -> int:
        dropped = 0
        why = "banned from this server" + (f": {ban.reason}" if ban.reason else "")
        for session in list(self.service.sessions):
            if self._matches(ban, session):
                dropped += 1
                self.service.drop(session, why)
        return dropped

    def _matches(self, ban: ServerBan, session) -> bool:
        if ban.kind == "addr":
            address = _network(session.host)
            network = self._networks.get(ban.target)
            return (address is not None and network is not None
                    and address.version == network.version and address in network)
        if ban.kind == "nick" and session.key == ban.target:
            return True
        # A nick ban covers the account of that name too (as at login).
        return session.account == ban.target

    def ungban(self, by: str, target):
        kind, name = self.parse_target(target)
        if self._in_force(kind, name) is None:
            raise ChatError("no_such_ban", f"{kind}:{name} is not banned")

        def removed(_):
            self._forget(kind, name)
            self._tell({"op": "remove", "kind": kind, "target": name})
            self._logged(by, "ungban", f"{kind}:{name}")
            return acks.UngbanAck(kind, name)
        return self.service.store.remove_server_ban(kind, name).addCallback(removed)

    def list_bans(self, by: str):
        now = self.service.clock.seconds()
        for ban in [b for b in self.bans.values() if b.expired(now)]:
            self._forget(ban.kind, ban.target)
        bans = [{"kind": b.kind, "target": b.target, "until": b.until, "by": b.by,
                 "reason": b.reason, "created": b.created}
                for b in sorted(self.bans.values(), key=lambda b: (b.kind, b.target))]
        self._logged(by, "gbans", "-", count=len(bans))
        return succeed(acks.GbansAck(bans))

    def list_sessions(self, by: str):
        now = self.service.clock.seconds()
        everyone = sorted(self.service.sessions, key=lambda s: (s.nick is None, s.nick or "",
                                                                s.connected_at))
        listing = [{"nick": s.nick, "address": s.host, "front_end": front_end(s.sink),
                    "rooms": [room.name for room in s.rooms.values()],
                    "idle": round(now - s.last_seen, 1)}
                   for s in everyone[:SESSIONS_PAGE]]
        self._logged(by, "sessions", "-", count=len(everyone))
        return succeed(acks.SessionsAck(listing, len(everyone)))
