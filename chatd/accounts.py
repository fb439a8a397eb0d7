"""Accounts: registered names, who is logged in as what, passwords, offline messages.

``Accounts`` is the only writer of the registered-name cache, of the login
table and of ``Session.account``.  Hashing and verifying cost tens of
milliseconds of CPU by design, so they run on a thread pool.  Passwords are
never logged.

A login or registration also hands out a resume token, so a client that
reconnects (a deploy, a flaky network: everyone at once) logs in again without
argon2.  Tokens are 256 random bits, so a sha256 of one is as safe to keep as
a password hash and costs nothing to check; only that hash is stored.  Each is
good once (``resume`` rotates it), expires after --resume-ttl, and goes with
logout, a password change and an operator's kill or ban.  Tokens are never
logged either.
"""

import hashlib
import itertools
import random
import secrets

from twisted.logger import Logger

from chatd.errors import ChatError
from chatd.passwords import Passwords, check_password
from chatd.store import QueueFull, StoreUnavailable
from chatd.throttle import LoginThrottle, RegistrationThrottle, address_key
from chatd.validate import skeleton


def token_hash(token: str) -> str:
    """What the store keeps of a resume token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Accounts:
    log = Logger()

    def __init__(self, store, clock, limits, passwords: Passwords | None = None):
        self.store = store
        self.clock = clock
        self.limits = limits
        self._passwords = passwords
        self.login_throttle = LoginThrottle.from_limits(clock, limits)
        self.register_throttle = RegistrationThrottle.from_limits(clock, limits)
        self._registered = set()  # account keys, i.e. registered nicks in lower case
        self._lookalikes = {}  # skeleton -> the registered key that has it
        self._logins = {}  # account key -> the session logged in as it
        self._guests = itertools.count(random.randrange(10000, 90000))

    def reconfigure(self, limits) -> None:
        """New limits from a reload; the throttles keep what they have counted."""
        self.limits = limits
        self.login_throttle.reconfigure(limits)
        self.register_throttle.reconfigure(limits)

    @property
    def passwords(self) -> Passwords:
        if self._passwords is None:
            self._passwords = Passwords(self.clock, threads=self.limits.hash_threads,
                                        max_waiting=self.limits.hash_queue)
        return self._passwords

    def start(self) -> None:
        self.passwords.start()

    def stop(self) -> None:
        if self._passwords is not None:
            self._passwords.stop()

    def _host_key(self, session) -> str:
        return address_key(session.host, self.limits.ipv6_prefix)

    def loaded(self, keys) -> None:
        self._registered = set()
        self._lookalikes = {}
        for key in keys:
            self._add_registered(key)

    def _add_registered(self, key: str) -> None:
        self._registered.add(key)
        self._lookalikes.setdefault(skeleton(key), key)

    def lookalike(self, key: str) -> str | None:
        """The registered nick that ``key`` would pass for (``aIice`` for ``alice``), if any."""
        other = self._lookalikes.get(skeleton(key))
        return other if other is not None and other != key else None

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

    def closed(self, session) -> None:
        """The session is gone: log it out and forget its failed logins."""
        self.log_out(session)
        self.login_throttle.forget_connection(session)

    def recheck(self, key: str):
        """Fires True if ``key`` turns out to be registered after all (another node
        sharing the database registered it since we loaded the names)."""
        def found(account):
            if account is None:
                return False
            self._add_registered(key)
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
        host_key = self._host_key(session)
        # Charged before the (expensive) hash, so parallel registrations count at once.
        self.register_throttle.check(host_key)
        try:
            d = self.passwords.hash(password)
        except ChatError:
            self.register_throttle.refund(host_key)
            raise
        d.addCallback(lambda h: self.store.create_account(key, nick, h, self.clock.seconds()))

        def created(ok):
            self._add_registered(key)
            if not ok:
                raise ChatError("already_registered", f"{nick} is already registered")
            self.log.info("registered {nick} from {host}", nick=nick, host=session.host)
            if session.attached and session.key == key:
                self.log_in(session, key)
            return nick

        def refund(failure):
            self.register_throttle.refund(host_key)  # no account was made
            return failure
        return d.addCallback(created).addErrback(refund)

    def _check(self, session, key: str, password: str, host_key: str):
        """Fires the ``Account`` if ``password`` is its password, else None.

        The attempt is charged to the connection and the address first (so
        parallel guesses count at once), and every check of an account being
        guessed waits the same delay, whatever its outcome.  The owner, from
        a connection and an address that have not failed, is never refused.
        """
        throttle = self.login_throttle
        throttle.check(session, host_key)
        d = throttle.pause(key)
        d.addCallback(lambda _: self.store.get_account(key))

        def verify(acct):
            return self.passwords.verify(acct.password_hash if acct else None,
                                         password).addCallback(lambda ok: acct if ok else None)

        def judged(acct):
            if acct is None:
                throttle.failed(session, host_key, key)
            else:
                throttle.succeeded(session, host_key)
                self._upgrade_hash(acct, password)
            return acct

        def abandoned(failure):
            throttle.abandoned(session, host_key)  # never judged: busy, store down
            return failure
        return d.addCallback(verify).addCallbacks(judged, abandoned)

    def _upgrade_hash(self, acct, password) -> None:
        """A hash made with older argon2 parameters is replaced, in the background."""
        if not self.passwords.needs_rehash(acct.password_hash):
            return
        try:
            d = self.passwords.hash(password)
        except ChatError:
            return  # busy: next login
        d.addCallback(lambda h: self.store.set_password(acct.key, h))
        d.addErrback(lambda f: self.log.warn("could not upgrade the password hash of "
                                             "{nick}: {error}", nick=acct.key,
                                             error=f.getErrorMessage()))

    def verify(self, session, nick, password):
        """Check a login; fires the ``Account`` (the caller claims the nick)."""
        if not isinstance(nick, str) or not isinstance(password, str) or not password:
            raise ChatError("missing_argument", "usage: /login NICK PASSWORD")
        key = nick.lower()
        if session.account == key:
            raise ChatError("already_logged_in", f"you are already logged in as {nick}")
        host = session.host
        d = self._check(session, key, password, self._host_key(session))

        def checked(acct):
            if acct is None:
                self.log.info("failed login as {nick} from {host}", nick=key, host=host)
                raise ChatError("login_failed", "wrong nick or password")
            if not session.attached:
                raise ChatError("not_connected", "the connection closed while logging in")
            self._add_registered(key)
            return acct
        return d.addCallback(checked)

    # -- resume tokens ------------------------------------------------------------------
    def issue_token(self, key: str):
        """A new resume token for account ``key``; fires ``(token, expires)``, or
        ``(None, None)`` if the store could not keep it (the login stands; the
        client's next reconnect uses the password)."""
        token = secrets.token_urlsafe(32)
        now = self.clock.seconds()
        expires = now + self.limits.resume_ttl

        def failed(failure):
            failure.trap(StoreUnavailable)
            self.log.warn("could not store a resume token for {account}: {error}",
                          account=key, error=failure.getErrorMessage())
            return None, None
        d = self.store.create_resume_token(token_hash(token), key, expires, now)
        return d.addCallbacks(lambda _: (token, expires), failed)

    def logout(self, session):
        """Log the session out and revoke its account's resume tokens (on every
        device: logging out means the tokens stop working); fires the account key."""
        key = session.account
        if key is None:
            raise ChatError("not_logged_in", "you are not logged in")
        self.log_out(session)
        session.account = None
        self.log.info("{nick} logged out from {host}", nick=key, host=session.host)
        return self.revoke_tokens(key, "logout").addCallback(lambda _: key)

    def revoke_tokens(self, key: str, why: str):
        """Forget every resume token of account ``key``; fires how many went.  A
        store fault is logged and swallowed: the caller's action stands."""
        def failed(failure):
            failure.trap(StoreUnavailable)
            self.log.warn("could not revoke the resume tokens of {account} ({why}): "
                          "{error}", account=key, why=why, error=failure.getErrorMessage())
            return 0
        return self.store.revoke_resume_tokens(key).addErrback(failed)

    def resume(self, session, nick, token):
        """Check a resume token; fires ``(Account, (token, expires))``: the caller
        claims the nick, and hands out the new token, kept in the same store
        transaction that spent this one (one commit a resume).

        The token is spent whatever the outcome.  A refusal is charged to the
        connection and the address like a failed login, so guessing tokens is
        throttled like guessing passwords (not that it could succeed).
        """
        if not isinstance(nick, str) or not isinstance(token, str) or not token:
            raise ChatError("missing_argument", "usage: /resume NICK TOKEN")
        key = nick.lower()
        if session.account == key:
            raise ChatError("already_logged_in", f"you are already logged in as {nick}")
        host_key = self._host_key(session)
        throttle = self.login_throttle
        throttle.check(session, host_key)
        new = secrets.token_urlsafe(32)
        now = self.clock.seconds()
        expires = now + self.limits.resume_ttl
        d = self.store.exchange_resume_token(token_hash(token), token_hash(new), key,
                                             expires, now)
        d.addCallback(lambda taken: self.store.get_account(key) if taken else None)

        def judged(acct):
            if acct is None:
                # The charge ``check`` made stands; the account's login delay is not
                # raised: a token cannot be guessed, and an expired one is no attack.
                self.log.info("refused resume as {nick} from {host}", nick=key,
                              host=session.host, code="resume_refused")
                raise ChatError("resume_refused", "that resume token is not valid; "
                                "log in with the password")
            throttle.succeeded(session, host_key)
            if not session.attached:
                raise ChatError("not_connected", "the connection closed while logging in")
            self._add_registered(key)
            return acct, (new, expires)

        def abandoned(failure):
            throttle.abandoned(session, host_key)
            return failure
        return d.addCallbacks(judged, abandoned)

    def change_password(self, session, old, new):
        if session.account is None:
            raise ChatError("not_logged_in", "/login (or /register) first")
        if not isinstance(old, str) or not old:
            raise ChatError("missing_argument", "usage: /password OLD NEW")
        check_password(new)
        key = session.account
        d = self._check(session, key, old, self._host_key(session))

        def checked(acct):
            if acct is None:
                raise ChatError("login_failed", "wrong password")
            d = self.passwords.hash(new).addCallback(lambda h: self.store.set_password(key, h))
            # Whoever held a token may have held the old password too.
            return d.addCallback(lambda _: self.revoke_tokens(key, "password changed"))
        return d.addCallback(checked)

    # -- offline private messages -------------------------------------------------------
    def queue_private(self, nick, to_key, to, text, ts):
        """Keep a private message for an offline account; fires its id.  An
        account already holding --offline-queue of them takes no more."""
        d = self.store.queue_private(to_key, nick, to, text, ts, cap=self.limits.offline_queue)

        def full(failure):
            failure.trap(QueueFull)
            raise ChatError("recipient_busy", f"{to} has too many messages waiting; "
                            "try again after they next log in")
        return d.addErrback(full)

    def pending_offline(self, key):
        """The private messages waiting for account ``key``, oldest first (never more
        than the queue holds, so a backlog fits under the send-queue cap)."""
        return self.store.pending_privates(key, limit=self.limits.offline_queue)

    def forget_offline(self, key, upto: int):
        """Delivered: forget them.  If that fails they come again at the next login."""
        d = self.store.delete_privates(key, upto)
        d.addErrback(lambda f: f.trap(StoreUnavailable))
        return d
