"""Accounts: registered names, who is logged in as what, passwords, offline messages.

``Accounts`` is the only writer of the registered-name cache, of the login
table and of ``Session.account``.  Hashing and verifying cost tens of
milliseconds of CPU by design, so they run on a thread pool.  Passwords are
never logged.
"""

import itertools
import random
from collections import deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from chatd.errors import ChatError
from chatd.store import StoreUnavailable

MIN_PASSWORD = 8
MAX_PASSWORD = 256


def check_password(password) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ChatError("bad_password",
                        f"a password is {MIN_PASSWORD}-{MAX_PASSWORD} characters")
    return password


class Passwords:
    """argon2id hashing on a thread pool; ``verify`` fires True or False."""

    def __init__(self, reactor, hasher: PasswordHasher | None = None):
        self.reactor = reactor
        self.hasher = hasher or PasswordHasher()  # argon2-cffi's RFC 9106 low-memory profile
        # Verifying against this when the account does not exist costs the same
        # as a real verify, so timing does not reveal which nicks are registered.
        # Made on first use, on a pool thread: an argon2 hash is no start-up work.
        self._dummy = None

    def _defer(self, fn, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    def hash(self, password: str):
        return self._defer(self.hasher.hash, password)

    def verify(self, password_hash: str | None, password: str):
        return self._defer(self._verify, password_hash, password)

    def _verify(self, password_hash, password) -> bool:
        # argon2's verify compares digests in constant time.
        if not password_hash and self._dummy is None:
            self._dummy = self.hasher.hash("not a real password, only for timing")
        try:
            return self.hasher.verify(password_hash or self._dummy, password) and bool(
                password_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


class LoginLimiter:
    """Failed logins per nick and per address within a sliding window.

    Every attempt counts as a failure until it succeeds, so parallel guesses
    cannot slip past the limit while their hashes are being checked.  Past the
    limit, attempts are refused before any password is checked, until the
    oldest failure leaves the window.  Per nick stops a guesser on one account
    from many addresses; per address stops one address trying many accounts.
    """

    def __init__(self, clock, per_nick: int = 5, per_host: int = 20, window: float = 300.0):
        self.clock = clock
        self.per_nick = per_nick
        self.per_host = per_host
        self.window = window
        self._nick = {}
        self._host = {}

    def _recent(self, table: dict, key) -> deque:
        stamps = table.setdefault(key, deque())
        cutoff = self.clock.seconds() - self.window
        while stamps and stamps[0] <= cutoff:
            stamps.popleft()
        return stamps

    def attempt(self, nick_key: str, host: str) -> None:
        """Count an attempt, or raise ``login_throttled`` past a limit."""
        nick_stamps = self._recent(self._nick, nick_key)
        host_stamps = self._recent(self._host, host)
        now = self.clock.seconds()
        for stamps, limit in ((nick_stamps, self.per_nick), (host_stamps, self.per_host)):
            if len(stamps) >= limit:
                wait = stamps[0] + self.window - now
                raise ChatError("login_throttled",
                                f"too many failed logins; try again in {max(1, round(wait))} s")
        nick_stamps.append(now)
        host_stamps.append(now)

    def succeeded(self, nick_key: str, host: str) -> None:
        self._nick.pop(nick_key, None)
        stamps = self._host.get(host)
        if stamps:
            stamps.pop()
        if not stamps:
            self._host.pop(host, None)


class Accounts:
    log = Logger()

    def __init__(self, store, clock, passwords: Passwords | None = None):
        self.store = store
        self.clock = clock
        self._passwords = passwords
        self.limiter = LoginLimiter(clock)
        self._registered = set()  # account keys, i.e. registered nicks in lower case
        self._logins = {}  # account key -> the session logged in as it
        self._guests = itertools.count(random.randrange(10000, 90000))

    @property
    def passwords(self) -> Passwords:
        if self._passwords is None:
            self._passwords = Passwords(self.clock)
        return self._passwords

    def loaded(self, keys) -> None:
        self._registered = set(keys)

    def __len__(self) -> int:
        return len(self._registered)

    def is_registered(self, key: str) -> bool:
        return key in self._registered

    def session_of(self, key: str):
        """The session logged in as account ``key``, if any."""
        return self._logins.get(key)

    def log_in(self, session, key: str) -> None:
        self.log_out(session)
        session.account = key
        self._logins[key] = session

    def log_out(self, session) -> None:
        if session.account is not None and self._logins.get(session.account) is session:
            del self._logins[session.account]

    def recheck(self, key: str):
        """Fires True if ``key`` turns out to be registered after all (another node
        sharing the database registered it since we loaded the names)."""
        def found(account):
            if account is None:
                return False
            self._registered.add(key)
            return True
        return self.store.get_account(key).addCallback(found)

    def guest_nick(self, taken) -> str:
        """A Guest12345 nick that nobody holds (``taken(key)``) and nobody registered."""
        while True:
            nick = f"Guest{next(self._guests)}"
            if not taken(nick.lower()) and nick.lower() not in self._registered:
                return nick

    # -- flows: each fires with the account, or fails with a ChatError ---------------
    def register(self, session, password):
        """Register the session's nick to it, and log it in."""
        check_password(password)
        key, nick = session.key, session.nick
        if key in self._registered:
            raise ChatError("already_registered", f"{nick} is already registered")
        d = self.passwords.hash(password)
        d.addCallback(lambda h: self.store.create_account(key, nick, h, self.clock.seconds()))

        def created(ok):
            self._registered.add(key)
            if not ok:
                raise ChatError("already_registered", f"{nick} is already registered")
            self.log.info("registered {nick} from {host}", nick=nick, host=session.host)
            if session.attached and session.key == key:
                self.log_in(session, key)
            return nick
        return d.addCallback(created)

    def verify(self, session, nick, password):
        """Check a login; fires the ``Account`` (the caller claims the nick)."""
        if not isinstance(nick, str) or not isinstance(password, str) or not password:
            raise ChatError("missing_argument", "usage: /login NICK PASSWORD")
        key = nick.lower()
        if session.account == key:
            raise ChatError("already_logged_in", f"you are already logged in as {nick}")
        host = session.host
        self.limiter.attempt(key, host)
        d = self.store.get_account(key)
        d.addCallback(lambda acct: self.passwords.verify(
            acct.password_hash if acct else None, password).addCallback(lambda ok: (acct, ok)))

        def checked(result):
            acct, ok = result
            if not ok:
                self.log.info("failed login as {nick} from {host}", nick=key, host=host)
                raise ChatError("login_failed", "wrong nick or password")
            self.limiter.succeeded(key, host)
            if not session.attached:
                raise ChatError("not_connected", "the connection closed while logging in")
            self._registered.add(key)
            return acct
        return d.addCallback(checked)

    def change_password(self, session, old, new):
        if session.account is None:
            raise ChatError("not_logged_in", "/login (or /register) first")
        if not isinstance(old, str) or not old:
            raise ChatError("missing_argument", "usage: /password OLD NEW")
        check_password(new)
        key, host = session.account, session.host
        self.limiter.attempt(key, host)
        d = self.store.get_account(key)
        d.addCallback(lambda acct: self.passwords.verify(acct.password_hash if acct else None,
                                                          old))

        def checked(ok):
            if not ok:
                raise ChatError("login_failed", "wrong password")
            self.limiter.succeeded(key, host)
            return self.passwords.hash(new).addCallback(
                lambda h: self.store.set_password(key, h))
        return d.addCallback(checked)

    # -- offline private messages -------------------------------------------------------
    def queue_private(self, nick, to_key, to, text, ts):
        """Keep a private message for an offline account; fires its id."""
        return self.store.queue_private(to_key, nick, to, text, ts)

    def pending_offline(self, key):
        """The private messages waiting for account ``key``, oldest first."""
        return self.store.pending_privates(key)

    def forget_offline(self, key, upto: int):
        """Delivered: forget them.  If that fails they come again at the next login."""
        d = self.store.delete_privates(key, upto)
        d.addErrback(lambda f: f.trap(StoreUnavailable))
        return d
