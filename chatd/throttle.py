"""Login and registration throttles, keyed by who is asking, in bounded tables.

Failed logins are counted per connection and per address, never per account:
a per-account limit lets any stranger lock the owner out.  Guessing one
account from many addresses is slowed instead by a small, capped delay on
every login to that account, which the owner also pays but which never
refuses them.  Registrations are limited per address and overall.

Each count is a leaky bucket (a level that drains at ``limit / window`` per
second), one float pair per key, in a table of at most ``max_entries`` keys
that forgets drained keys and, when full, the least recently charged one.
So memory stays bounded whatever the input, and an evicted key is one that
has been quiet the longest.

Refusals never say when to try again: that would tell a guesser exactly how
fast it may go.
"""

import ipaddress
from collections import OrderedDict

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater

from chatd.errors import ChatError


def address_key(host: str, ipv6_prefix: int = 64) -> str:
    """The key for throttling ``host``: IPv4 as is, IPv6 by its /``ipv6_prefix`` network.

    One IPv6 customer usually has a whole /64 (often a /56 or /48), so
    counting single IPv6 addresses would give it 2**64 fresh starts.  An
    IPv4-mapped IPv6 address counts as its IPv4 address.  Anything that is
    not an IP address (a UNIX socket's peer) is used as is.
    """
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return host
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 4:
        return str(ip)
    return str(ipaddress.ip_network((ip, ipv6_prefix), strict=False))


class LeakyCounts:
    """Per-key counts that leak ``limit`` per ``window`` seconds, in a bounded table."""

    def __init__(self, clock, limit: int, window: float, max_entries: int):
        if limit < 1 or window <= 0 or max_entries < 1:
            raise ValueError("limit, window and max_entries must be positive")
        self.clock = clock
        self.limit = limit
        self.rate = limit / window
        self.max_entries = max_entries
        # key -> (level, stamp), least recently charged first.
        self._table = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def retune(self, limit: int, window: float, max_entries: int) -> None:
        """New numbers from a reload; the counts so far stay (a reload must not
        hand every guesser or flooder a fresh allowance)."""
        if limit < 1 or window <= 0 or max_entries < 1:
            raise ValueError("limit, window and max_entries must be positive")
        self.limit = limit
        self.rate = limit / window
        self.max_entries = max_entries
        self._prune(self.clock.seconds())

    def level(self, key) -> float:
        entry = self._table.get(key)
        if entry is None:
            return 0.0
        level, stamp = entry
        return max(0.0, level - (self.clock.seconds() - stamp) * self.rate)

    def full(self, key) -> bool:
        """Whether charging ``key`` once more would go past the limit."""
        # The small slack absorbs float error in the drain (5 - 180 * 5/900 != 4.0).
        return self.level(key) + 1 > self.limit + 1e-9

    def charge(self, key, amount: float = 1.0) -> None:
        now = self.clock.seconds()
        # Never above limit + 1, so a hammering key is forgotten a window after it stops.
        level = min(self.level(key) + amount, self.limit + 1.0)
        self._table[key] = (level, now)
        self._table.move_to_end(key)
        self._prune(now)

    def refund(self, key, amount: float = 1.0) -> None:
        if key not in self._table:
            return
        level = self.level(key) - amount
        if level <= 0:
            del self._table[key]
        else:
            # Keeps its place in the order: a refund is not activity.
            self._table[key] = (level, self.clock.seconds())

    def forget(self, key) -> None:
        self._table.pop(key, None)

    def _prune(self, now: float) -> None:
        table = self._table
        # Oldest first: drop drained keys until one is still counting, ...
        while table:
            key, (level, stamp) = next(iter(table.items()))
            if level - (now - stamp) * self.rate > 0:
                break
            del table[key]
        # ... then, if still too many, the least recently charged.
        while len(table) > self.max_entries:
            table.popitem(last=False)


class LoginThrottle:
    """Failed logins per connection and per address; a soft delay per account.

    ``check`` charges an attempt before its password is checked, so parallel
    guesses cannot all slip in while their hashes run; ``succeeded`` (or
    ``abandoned``, when the attempt was never judged) gives it back.  The
    owner, with the right password, from a connection and address that have
    not failed, is never refused: strangers' failures only raise the delay
    (at most ``max_delay`` seconds) before every login to that account.
    """

    def __init__(self, clock, *, per_conn: int = 5, per_addr: int = 20,
                 window: float = 900.0, max_delay: float = 2.0, max_entries: int = 10000):
        self.clock = clock
        self.max_delay = max_delay
        self.conns = LeakyCounts(clock, per_conn, window, max_entries)
        self.addrs = LeakyCounts(clock, per_addr, window, max_entries)
        # Failures per account, from anywhere, only for the delay; a full
        # bucket means the longest delay.
        self.accounts = LeakyCounts(clock, per_addr, window, max_entries)

    @classmethod
    def from_limits(cls, clock, limits) -> "LoginThrottle":
        return cls(clock, per_conn=limits.login_fails_per_conn,
                   per_addr=limits.login_fails_per_addr, window=limits.login_window,
                   max_delay=limits.login_delay, max_entries=limits.throttle_entries)

    def reconfigure(self, limits) -> None:
        """New limits from a reload, keeping what has been counted."""
        entries, window = limits.throttle_entries, limits.login_window
        self.max_delay = limits.login_delay
        self.conns.retune(limits.login_fails_per_conn, window, entries)
        self.addrs.retune(limits.login_fails_per_addr, window, entries)
        self.accounts.retune(limits.login_fails_per_addr, window, entries)

    def check(self, conn_id, host_key: str) -> None:
        """Charge a login attempt, or raise ``login_throttled`` without charging."""
        if self.conns.full(conn_id) or self.addrs.full(host_key):
            raise ChatError("login_throttled", "too many failed logins; try again later")
        self.conns.charge(conn_id)
        self.addrs.charge(host_key)

    def delay(self, account_key: str) -> float:
        """Seconds to wait before answering any login to this account, right or wrong.

        Grows with the account's recent failures from anywhere, up to
        ``max_delay``.  Applied to every attempt whatever its outcome, so
        it tells nothing about the password.
        """
        accounts = self.accounts
        return self.max_delay * min(1.0, accounts.level(account_key) / accounts.limit)

    def pause(self, account_key: str) -> Deferred:
        """A Deferred that fires None after ``delay(account_key)`` seconds on the clock."""
        seconds = self.delay(account_key)
        if seconds <= 0:
            return succeed(None)
        return deferLater(self.clock, seconds, lambda: None)

    def failed(self, conn_id, host_key: str, account_key: str) -> None:
        """The attempt ``check`` charged was a wrong password (or no such account)."""
        self.accounts.charge(account_key)

    def succeeded(self, conn_id, host_key: str) -> None:
        """The right password: the attempt's charge is given back."""
        self.conns.refund(conn_id)
        self.addrs.refund(host_key)

    # The attempt was never judged (store unavailable, connection gone).
    abandoned = succeeded

    def forget_connection(self, conn_id) -> None:
        self.conns.forget(conn_id)


class RegistrationThrottle:
    """Registrations per address per ``window`` and overall per minute.

    ``check`` charges before the (expensive) hash, so parallel registrations
    count at once; ``refund`` gives the charge back when no account was made
    (nick already registered, store unavailable).
    """

    def __init__(self, clock, *, per_addr: int = 3, window: float = 3600.0,
                 per_minute: int = 20, max_entries: int = 10000):
        self.addrs = LeakyCounts(clock, per_addr, window, max_entries)
        self.overall = LeakyCounts(clock, per_minute, 60.0, 1)

    @classmethod
    def from_limits(cls, clock, limits) -> "RegistrationThrottle":
        return cls(clock, per_addr=limits.register_per_addr, window=limits.register_window,
                   per_minute=limits.register_per_minute, max_entries=limits.throttle_entries)

    def reconfigure(self, limits) -> None:
        """New limits from a reload, keeping what has been counted."""
        self.addrs.retune(limits.register_per_addr, limits.register_window,
                          limits.throttle_entries)
        self.overall.retune(limits.register_per_minute, 60.0, 1)

    def check(self, host_key: str) -> None:
        if self.addrs.full(host_key) or self.overall.full(None):
            raise ChatError("register_throttled", "too many registrations; try again later")
        self.addrs.charge(host_key)
        self.overall.charge(None)

    def refund(self, host_key: str) -> None:
        self.addrs.refund(host_key)
        self.overall.refund(None)
