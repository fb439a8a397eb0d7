"""chatd.passwords: password rules, argon2 parameters, and the bounded hashing pool.

Scheduling is tested on a fake pool that runs a job only when told; real
threads are used where they are the point (concurrency bound, argon2 round
trip), synchronised with events and queues, never sleeps.
"""

import queue
import threading

import pytest
from argon2 import PasswordHasher
from twisted.python.threadpool import ThreadPool

from chatd.errors import ChatError
from chatd.passwords import Argon2Params, Passwords, check_password

TINY = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)


class ImmediateReactor:
    def callFromThread(self, f, *args):
        f(*args)


class QueueReactor:
    """callFromThread from real pool threads; the test thread runs the calls."""

    def __init__(self):
        self.calls = queue.Queue()

    def callFromThread(self, f, *args):
        self.calls.put((f, args))

    def pump_until(self, done, timeout=30.0):
        while not done():
            f, args = self.calls.get(timeout=timeout)
            f(*args)


class ManualPool:
    """A thread pool stand-in that runs a job (in the test's thread) only on ``run``."""

    def __init__(self):
        self.started = False
        self.stopped = False
        self.jobs = []

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True

    def callInThreadWithCallback(self, on_result, fn, *args):
        self.jobs.append((on_result, fn, args))

    def run(self, index=0):
        on_result, fn, args = self.jobs.pop(index)
        try:
            result, ok = fn(*args), True
        except Exception as e:
            result, ok = e, False
        on_result(ok, result)


class EchoHasher:
    def hash(self, password):
        return f"h({password})"

    def verify(self, password_hash, password):
        return password_hash == f"h({password})"

    def check_needs_rehash(self, password_hash):
        return False


def manual(threads=2, max_waiting=3):
    pool = ManualPool()
    pw = Passwords(ImmediateReactor(), threads=threads, max_waiting=max_waiting,
                   hasher=EchoHasher(), pool=pool)
    pw.start()
    return pw, pool


def results_of(d):
    out = []
    d.addBoth(out.append)
    return out


# -- check_password ----------------------------------------------------------------

@pytest.mark.parametrize("password", ["12345678", "x" * 256, "pässwörd"])
def test_check_password_accepts(password):
    assert check_password(password) == password


@pytest.mark.parametrize("password", ["1234567", "x" * 257, "", None, 12345678])
def test_check_password_refuses(password):
    with pytest.raises(ChatError) as e:
        check_password(password)
    assert e.value.code == "bad_password"


# -- parameters --------------------------------------------------------------------

def test_default_params_are_argon2id_64_mib():
    hasher = Argon2Params().hasher()
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (2, 65536, 1)
    assert hasher.type.name == "ID"


@pytest.mark.parametrize("kwargs", [
    {"time_cost": 0}, {"parallelism": 0}, {"parallelism": 256},
    {"memory_cost": 7}, {"memory_cost": 15, "parallelism": 2},
    {"memory_cost": 4 * 1024 * 1024 + 1},
])
def test_bad_params_are_refused(kwargs):
    with pytest.raises(ValueError):
        Argon2Params(**kwargs)


# -- scheduling ---------------------------------------------------------------------

def test_at_most_threads_jobs_reach_the_pool():
    pw, pool = manual(threads=2, max_waiting=10)
    ds = [pw.hash(f"pw{i}") for i in range(5)]
    assert (len(pool.jobs), pw.running, pw.waiting) == (2, 2, 3)
    pool.run()
    assert (len(pool.jobs), pw.running, pw.waiting) == (2, 2, 2)
    while pool.jobs:
        pool.run()
    assert (pw.running, pw.waiting) == (0, 0)
    assert [results_of(d) for d in ds] == [[f"h(pw{i})"] for i in range(5)]


def test_waiting_requests_start_in_arrival_order():
    pw, pool = manual(threads=1, max_waiting=10)
    started = []
    pw.hasher.hash = lambda p: started.append(p) or p
    for i in range(6):
        pw.hash(str(i))
    while pool.jobs:
        pool.run()
    assert started == [str(i) for i in range(6)]


def test_past_max_waiting_a_request_is_refused_at_once():
    pw, pool = manual(threads=2, max_waiting=3)
    for i in range(5):
        pw.verify("h(x)", "x")
    with pytest.raises(ChatError) as e:
        pw.hash("one too many")
    assert e.value.code == "busy"
    assert (len(pool.jobs), pw.waiting) == (2, 3)
    # Room again once one finishes.
    pool.run()
    assert results_of(pw.hash("fits")) == []
    assert pw.waiting == 3


def test_max_waiting_zero_means_no_queue():
    pw, _ = manual(threads=1, max_waiting=0)
    pw.hash("a")
    with pytest.raises(ChatError):
        pw.hash("b")


def test_a_failing_job_fails_its_deferred_and_the_queue_moves_on():
    pw, pool = manual(threads=1)

    def boom(password):
        raise RuntimeError("argon2 broke")
    pw.hasher.hash = boom
    first, second = pw.hash("a"), pw.hash("b")
    pool.run()
    [failure] = results_of(first)
    assert failure.check(RuntimeError)
    assert len(pool.jobs) == 1
    second.addErrback(lambda f: None)
    pool.run()


def test_stop_fails_waiting_requests_and_refuses_new_ones():
    pw, pool = manual(threads=1, max_waiting=5)
    running = pw.hash("running")
    waiting = [pw.hash(f"w{i}") for i in range(3)]
    pw.stop()
    assert pool.stopped
    for d in waiting:
        [failure] = results_of(d)
        assert failure.check(ChatError)
        assert failure.value.code == "shutting_down"
    with pytest.raises(ChatError):
        pw.hash("late")
    # The running job finishes and answers; nothing new starts.
    pool.run()
    assert results_of(running) == ["h(running)"]
    assert pool.jobs == [] and pw.running == 0


def test_stop_twice_and_stop_without_start_are_safe():
    pool = ManualPool()
    pw = Passwords(ImmediateReactor(), hasher=EchoHasher(), pool=pool)
    pw.stop()
    pw.stop()
    assert not pool.stopped  # never started, so nothing to stop
    pw.start()
    assert not pool.started  # a stopped Passwords does not come back


def test_requests_before_start_wait_for_it():
    pool = ThreadPool(minthreads=0, maxthreads=1)
    reactor = QueueReactor()
    pw = Passwords(reactor, TINY, threads=1, pool=pool)
    d = pw.hash("early password")
    out = results_of(d)
    pw.start()
    try:
        reactor.pump_until(lambda: out)
    finally:
        pw.stop()
    assert out[0].startswith("$argon2id$")


# -- real threads -------------------------------------------------------------------

class SlowHasher(EchoHasher):
    """Blocks each hash until released, recording how many run at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.peak = 0
        self.release = threading.Semaphore(0)
        self.entered = threading.Semaphore(0)

    def hash(self, password):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        self.entered.release()
        assert self.release.acquire(timeout=30)
        with self.lock:
            self.now -= 1
        return super().hash(password)


def test_real_pool_never_runs_more_than_threads_hashes():
    reactor, slow = QueueReactor(), SlowHasher()
    pw = Passwords(reactor, threads=3, max_waiting=100, hasher=slow)
    pw.start()
    try:
        out = []
        for i in range(20):
            pw.hash(str(i)).addCallback(out.append)
        for _ in range(3):
            assert slow.entered.acquire(timeout=30)
        # Three are inside the hasher and the rest wait in chatd's queue, not the pool's.
        assert (pw.running, pw.waiting) == (3, 17)
        for _ in range(20):
            slow.release.release()
        reactor.pump_until(lambda: len(out) == 20)
    finally:
        pw.stop()
    assert slow.peak == 3
    # FIFO start order and one thread per job: all twenty answered.
    assert sorted(out) == sorted(f"h({i})" for i in range(20))


def test_stop_with_work_queued_on_a_real_pool():
    reactor, slow = QueueReactor(), SlowHasher()
    pw = Passwords(reactor, threads=1, max_waiting=10, hasher=slow)
    pw.start()
    first = results_of(pw.hash("first"))
    queued = [results_of(pw.hash(f"q{i}")) for i in range(4)]
    assert slow.entered.acquire(timeout=30)
    slow.release.release()  # let the running one finish while stop() joins
    pw.stop()
    reactor.pump_until(lambda: first)
    assert first == ["h(first)"]
    assert all(out[0].value.code == "shutting_down" for out in queued)
    assert slow.peak == 1


def test_real_argon2_round_trip_and_unknown_account():
    reactor = QueueReactor()
    pw = Passwords(reactor, TINY, threads=2)
    pw.start()
    try:
        got = []
        pw.hash("correct horse").addCallback(got.append)
        reactor.pump_until(lambda: got)
        [h] = got
        assert h.startswith("$argon2id$v=19$m=8,t=1,p=1$")
        checks = [pw.verify(h, "correct horse"), pw.verify(h, "wrong horse"),
                  pw.verify(None, "correct horse"), pw.verify("not a hash", "x")]
        outs = [results_of(d) for d in checks]
        reactor.pump_until(lambda: all(outs))
    finally:
        pw.stop()
    assert outs == [[True], [False], [False], [False]]
    # The timing equaliser was made lazily, with our parameters.
    assert pw._dummy.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert not pw.needs_rehash(h)


def test_hash_with_old_default_params_verifies_and_needs_rehash():
    # argon2-cffi's own default (t=3, 64 MiB, p=4), which chatd used before.
    old = PasswordHasher().hash("correct horse")
    assert "$m=65536,t=3,p=4$" in old
    reactor = QueueReactor()
    pw = Passwords(reactor, TINY, threads=1)
    pw.start()
    try:
        outs = [results_of(pw.verify(old, "correct horse")),
                results_of(pw.verify(old, "wrong horse"))]
        reactor.pump_until(lambda: all(outs))
    finally:
        pw.stop()
    assert outs == [[True], [False]]
    assert pw.needs_rehash(old)
    assert not pw.needs_rehash("not a hash")
