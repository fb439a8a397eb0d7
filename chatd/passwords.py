"""Password rules, and argon2id hashing on a small bounded pool of its own.

A hash costs tens of milliseconds of CPU and ``memory_cost`` KiB of RAM by
design, so it never runs on the reactor thread.  It does not run on the
reactor's shared thread pool either: that pool grows to ten threads, and ten
parallel 64 MiB hashes were enough for 30 parallel registrations to take the
daemon from 78 to 734 MB.  Here at most ``threads`` hashes run at once, so
hashing needs at most ``threads * memory_cost`` KiB, and at most
``max_waiting`` more wait, in arrival order; past that a request is refused
at once with ``busy`` instead of queueing without end.

Passwords are never logged: nothing in this module logs.
"""

from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from chatd.errors import ChatError

MIN_PASSWORD = 8
MAX_PASSWORD = 256

# argon2 takes memory in KiB; it needs at least 8 KiB per lane.  The upper
# bound only catches a typo that would exhaust the machine (4 GiB per hash).
MAX_MEMORY_COST = 4 * 1024 * 1024


def check_password(password) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ChatError("bad_password",
                        f"a password is {MIN_PASSWORD}-{MAX_PASSWORD} characters")
    return password


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """argon2id cost parameters for new hashes (``--argon2-*`` options).

    The defaults take 90 ms of one core and 64 MiB per hash (measured on the
    development machine, 2 cores, argon2-cffi 25.1: t=2 m=64 MiB p=1 hash
    90 ms, verify 89 ms).  They keep the 64 MiB memory hardness of
    argon2-cffi's own default (t=3 m=64 MiB p=4, 99 ms there but up to four
    cores at once) while one hash occupies one core, so ``--hash-threads``
    bounds CPU as well as memory.  Every hash records its parameters, so
    hashes made with other parameters (such as the older default) still
    verify; ``Passwords.needs_rehash`` says when to upgrade one.
    """

    time_cost: int = 2  # passes over memory; time grows linearly
    memory_cost: int = 64 * 1024  # KiB per hash; resists GPU/ASIC guessing
    parallelism: int = 1  # lanes; >1 uses that many cores for one hash

    def __post_init__(self):
        if self.time_cost < 1:
            raise ValueError("argon2 time cost must be at least 1")
        if not 1 <= self.parallelism <= 255:
            raise ValueError("argon2 parallelism is 1-255")
        if not 8 * self.parallelism <= self.memory_cost <= MAX_MEMORY_COST:
            raise ValueError(f"argon2 memory cost is {8 * self.parallelism}-"
                             f"{MAX_MEMORY_COST} KiB (at least 8 KiB per lane)")

    def hasher(self) -> PasswordHasher:
        return PasswordHasher(time_cost=self.time_cost, memory_cost=self.memory_cost,
                              parallelism=self.parallelism, type=Type.ID)


class Passwords:
    """argon2id hash and verify on ``threads`` threads, with a FIFO of waiting requests.

    ``hash`` fires the encoded hash; ``verify`` fires True or False (never
    raising for a wrong password or a malformed stored hash).  Either fails
    at once with ``busy`` when ``max_waiting`` requests already wait, and
    with ``shutting_down`` once stopped.  Call ``start`` and ``stop`` with
    the service; requests made before ``start`` wait for it.
    """

    def __init__(self, reactor, params: Argon2Params | None = None, *, threads: int = 2,
                 max_waiting: int = 100, hasher=None, pool=None):
        if threads < 1 or max_waiting < 0:
            raise ValueError("threads must be at least 1 and max_waiting not negative")
        self.reactor = reactor
        self.params = params or Argon2Params()
        # ``hasher`` (anything with argon2's hash/verify/check_needs_rehash)
        # and ``pool`` are for tests.
        self.hasher = hasher or self.params.hasher()
        self.threads = threads
        self.max_waiting = max_waiting
        self._pool = pool or ThreadPool(minthreads=0, maxthreads=threads, name="chatd-argon2")
        self._waiting = deque()  # (Deferred, fn, args), oldest first
        self._running = 0  # jobs handed to the pool and not yet answered
        self._stopped = False
        # Verifying against this when the account does not exist costs the same
        # as a real verify, so timing does not reveal which nicks are registered.
        # Made on first use, on a pool thread: an argon2 hash is no start-up work.
        self._dummy = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        if not self._stopped and not self._pool.started:
            self._pool.start()

    def stop(self) -> None:
        """Refuse waiting and new requests; wait for the (at most ``threads``) running ones.

        Safe to call twice, or without ``start``.  The running hashes finish
        (argon2 cannot be interrupted), so this blocks for at most one hash.
        """
        if self._stopped:
            return
        self._stopped = True
        waiting, self._waiting = self._waiting, deque()
        for d, _fn, _args in waiting:
            d.errback(Failure(_stopping()))
        if self._pool.started:
            self._pool.stop()

    # -- requests ------------------------------------------------------------------
    def hash(self, password: str) -> Deferred:
        return self._submit(self.hasher.hash, password)

    def verify(self, password_hash: str | None, password: str) -> Deferred:
        """Fire whether ``password`` matches; None (no such account) costs the same and is False."""
        return self._submit(self._verify, password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a hash that just verified was made with other parameters than ours.

        Cheap (it only parses the hash), so the reactor thread may call it.
        After a successful login, hash the password again and store it.
        """
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return False  # nothing that verifies looks like this

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return self._running

    def _verify(self, password_hash, password) -> bool:
        # Runs on a pool thread.  argon2's verify compares digests in constant time.
        if not password_hash and self._dummy is None:
            self._dummy = self.hasher.hash("not a real password, only for timing")
        try:
            return self.hasher.verify(password_hash or self._dummy, password) and bool(
                password_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _submit(self, fn, *args) -> Deferred:
        if self._stopped:
            raise _stopping()
        d = Deferred()
        if self._running < self.threads:
            self._run(d, fn, args)
        elif len(self._waiting) < self.max_waiting:
            self._waiting.append((d, fn, args))
        else:
            # Refused before any work, so a flood costs neither memory nor CPU.
            raise ChatError("busy", "the server is busy; try again shortly")
        return d

    def _run(self, d, fn, args) -> None:
        self._running += 1

        def on_result(ok, result):
            # On the pool thread: hand the outcome back to the reactor thread.
            self.reactor.callFromThread(self._finished, d, ok, result)
        self._pool.callInThreadWithCallback(on_result, fn, *args)

    def _finished(self, d, ok, result) -> None:
        self._running -= 1
        # Start the next one first, so an exception in d's callbacks cannot stall the queue.
        if self._waiting and not self._stopped:
            self._run(*self._waiting.popleft())
        if ok:
            d.callback(result)
        else:
            d.errback(result)


def _stopping() -> ChatError:
    return ChatError("shutting_down", "the server is stopping")
