"""Named limits with their defaults, and the token bucket that enforces rates.

Every number a client can run into lives here, so the daemon's options, the
docs and the tests all read one source.
"""

from dataclasses import dataclass, fields

# Limits that 0 turns off rather than makes impossible.
OFF_AT_ZERO = frozenset({"coalesce_window", "large_room", "reconnect_burst"})


@dataclass(frozen=True, slots=True)
class Limits:
    max_line: int = 4096  # bytes in one line (line protocol, before decoding)
    max_frame: int = 16384  # bytes in one WebSocket message
    max_message: int = 2000  # characters of chat text in one message
    max_nick: int = 24
    max_room: int = 50
    max_rooms_per_session: int = 20
    rate: float = 5.0  # requests per second a session may sustain
    burst: int = 20  # requests a session may send at once
    # ... and once, when it connects, this many more: logging in (nick or login or
    # resume, a format switch, a rooms listing) and rejoining max_rooms_per_session
    # rooms, as the clients do after every reconnect, is never refused as a flood.
    reconnect_burst: int = 24
    flood_strikes: int = 30  # refused requests in a row before disconnecting
    nick_interval: float = 5.0  # seconds between nick changes
    max_connections: int = 20000
    max_per_ip: int = 100
    send_queue: int = 256 * 1024  # bytes of unsent output before a session is dropped
    ping_interval: float = 30.0  # ping a session silent this long
    ping_timeout: float = 60.0  # drop a session silent this long
    register_timeout: float = 60.0  # drop a connection that never picks a nick
    offline_queue: int = 100  # private messages kept for one offline account
    max_kept_rooms: int = 10  # rooms one account may keep
    new_rooms_per_minute: int = 10  # rooms one address may create per minute
    connects_per_minute: int = 60  # new connections one address may open per minute
    # Accounts (chatd.throttle, chatd.passwords); see docs/auth-limits.rst.
    login_fails_per_conn: int = 5  # failed logins one connection may make per window
    login_fails_per_addr: int = 20  # failed logins one address (IPv6: /64) per window
    login_window: float = 900.0  # seconds for a spent login allowance to come back
    login_delay: float = 2.0  # most seconds added to each login to an account being guessed
    register_per_addr: int = 3  # registrations one address (IPv6: /64) per register_window
    register_window: float = 3600.0
    register_per_minute: int = 20  # registrations from everyone together
    throttle_entries: int = 10000  # keys each throttle table remembers
    hash_threads: int = 2  # argon2 hashes at once (memory: threads x argon2 memory cost)
    hash_queue: int = 100  # password checks waiting for a thread before 'busy'
    resume_ttl: float = 7 * 86400.0  # seconds a resume token (chatd.accounts) stays good
    request_timeout: float = 10.0  # seconds from accept to a whole HTTP request head
    ipv6_prefix: int = 64  # IPv6 addresses in one network count as one address
    # Join/part storms (chatd.notices); 0 turns either off.
    coalesce_window: float = 1.0  # seconds joins and parts are gathered into one notice
    large_room: int = 500  # members from which joins and parts are not announced

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0 or (value == 0 and f.name not in OFF_AT_ZERO):
                raise ValueError(f"{f.name} must be positive"
                                 + (" or 0 (off)" if f.name in OFF_AT_ZERO else ""))
        if self.ping_timeout <= self.ping_interval:
            raise ValueError("ping_timeout must be longer than ping_interval")


class TokenBucket:
    """Classic token bucket; ``take`` returns whether a request may proceed.

    ``extra`` tokens on top of the capacity are given once, at the start: they
    are spent first and never refilled.
    """

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: int, now: float, extra: int = 0):
        self.rate = rate
        self.capacity = capacity
        self.tokens = float(capacity + extra)
        self.stamp = now

    def take(self, now: float) -> bool:
        tokens = self.tokens
        if tokens < self.capacity:
            tokens += (now - self.stamp) * self.rate
            if tokens > self.capacity:
                tokens = self.capacity
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False
