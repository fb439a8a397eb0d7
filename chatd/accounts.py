"""Account passwords (argon2, off the reactor thread) and failed-login throttling.

Hashing and verifying cost tens of milliseconds of CPU by design, so they run
on the reactor's thread pool.  Passwords are never logged: nothing here logs,
and the service only ever logs nicks and addresses.
"""

import itertools
import random
from collections import deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from chatd.errors import ChatError
from chatd.events import Notice, Private
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


class AccountFlows:
    """register, login and password, and the private messages kept for offline accounts."""

    log = Logger()

    def __init__(self, service, passwords: Passwords | None = None):
        self.service = service
        self._passwords = passwords
        self.limiter = LoginLimiter(service.clock)
        self._guests = itertools.count(random.randrange(10000, 90000))

    @property
    def passwords(self) -> Passwords:
        if self._passwords is None:
            self._passwords = Passwords(self.service.clock)
        return self._passwords

    def _store(self):
        if self.service.store is None:
            raise ChatError("store_unavailable", "this server keeps no accounts")
        return self.service.store

    def register(self, session, password):
        svc = self.service
        svc._require_nick(session)
        store = self._store()
        check_password(password)
        key, nick = session.key, session.nick
        if key in svc.registered:
            raise ChatError("already_registered", f"{nick} is already registered")
        d = self.passwords.hash(password)
        d.addCallback(lambda h: store.create_account(key, nick, h, svc.clock.seconds()))

        def created(ok):
            svc.registered.add(key)
            if not ok:
                raise ChatError("already_registered", f"{nick} is already registered")
            self.log.info("registered {nick} from {host}", nick=nick, host=session.host)
            if session.attached and session.key == key:
                self._logged_in(session, key)
            return {"nick": nick}
        return d.addCallbacks(created, svc.unavailable)

    def login(self, session, nick, password):
        svc = self.service
        store = self._store()
        if not isinstance(nick, str) or not isinstance(password, str) or not password:
            raise ChatError("missing_argument", "usage: /login NICK PASSWORD")
        key = svc.check_nick(nick)
        if session.account == key:
            raise ChatError("already_logged_in", f"you are already logged in as {nick}")
        host = session.host
        self.limiter.attempt(key, host)
        d = store.get_account(key)
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
            self._claim(session, acct)
            self.log.info("{nick} logged in from {host}", nick=acct.nick, host=host)
            return self._deliver_offline(session, key).addCallback(
                lambda n: {"nick": session.nick, "offline": n})
        return d.addCallbacks(checked, svc.unavailable)

    def password(self, session, old, new):
        svc = self.service
        store = self._store()
        if session.account is None:
            raise ChatError("not_logged_in", "/login (or /register) first")
        if not isinstance(old, str) or not old:
            raise ChatError("missing_argument", "usage: /password OLD NEW")
        check_password(new)
        key, host = session.account, session.host
        self.limiter.attempt(key, host)
        d = store.get_account(key)
        d.addCallback(lambda acct: self.passwords.verify(acct.password_hash if acct else None,
                                                          old))

        def checked(ok):
            if not ok:
                raise ChatError("login_failed", "wrong password")
            self.limiter.succeeded(key, host)
            return self.passwords.hash(new).addCallback(
                lambda h: store.set_password(key, h))
        d.addCallback(checked)
        d.addCallback(lambda _: {"nick": session.nick})
        return d.addErrback(svc.unavailable)

    # -- nick ownership --------------------------------------------------------------
    def _logged_in(self, session, key) -> None:
        svc = self.service
        if session.account is not None and svc.accounts.get(session.account) is session:
            del svc.accounts[session.account]
        session.account = key
        svc.accounts[key] = session

    def _claim(self, session, acct) -> None:
        """The owner takes its nick: an older login is closed, a guest holding it renamed."""
        svc = self.service
        key = acct.key
        other = svc.accounts.get(key)
        if other is not None and other is not session:
            svc.drop(other, "logged in from another connection")
        holder = svc.nicks.get(key)
        if holder is not None and holder is not session:
            self.evict_guest(holder, "its owner has logged in")
        self._logged_in(session, key)
        if session.key != key:
            svc.rename(session, acct.nick, key)

    def evict_guest(self, holder, why: str = "it belongs to an account") -> None:
        """Rename a session holding a registered nick it is not logged in as."""
        guest = self._guest_nick()
        holder.send(Notice(f"{holder.nick} is a registered nick and {why}; "
                           f"you are now {guest}"))
        self.service.rename(holder, guest, guest.lower())

    def _guest_nick(self) -> str:
        svc = self.service
        while True:
            nick = f"Guest{next(self._guests)}"
            if nick.lower() not in svc.nicks and nick.lower() not in svc.registered:
                return nick

    # -- offline private messages -------------------------------------------------------
    def queue_private(self, session, key, to, text):
        svc = self.service
        ts = svc.clock.seconds()
        nick = session.nick
        d = self._store().queue_private(key, nick, to, text, ts)
        return d.addCallbacks(lambda pid: Private(nick, to, text, pid, ts, offline=True),
                              svc.unavailable)

    def _deliver_offline(self, session, key):
        store = self.service.store
        d = store.pending_privates(key)

        def deliver(rows):
            if not rows or not session.attached:
                return 0
            for p in rows:
                # Addressed as the recipient is known now, not as the sender spelled it.
                session.send(Private(p.nick, session.nick, p.text, p.pid, p.ts, offline=True))
            done = store.delete_privates(key, rows[-1].pid)
            # Already delivered: if forgetting them fails they come again next time.
            done.addErrback(lambda f: f.trap(StoreUnavailable))
            return done.addCallback(lambda _: len(rows))

        def failed(failure):
            failure.trap(StoreUnavailable)
            session.send(Notice("messages waiting for you could not be fetched now; "
                                "they stay queued for your next login"))
            return 0
        return d.addCallbacks(deliver, failed)
