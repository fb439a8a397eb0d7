"""chatd.throttle: bounded, attacker-keyed login and registration throttles (fake clock)."""

import pytest
from twisted.internet.task import Clock

from chatd.errors import ChatError
from chatd.limits import Limits
from chatd.throttle import LeakyCounts, LoginThrottle, RegistrationThrottle, address_key


@pytest.fixture
def clock():
    c = Clock()
    c.advance(1_700_000_000)
    return c


def refused(fn, *args) -> ChatError:
    with pytest.raises(ChatError) as e:
        fn(*args)
    return e.value


# -- address_key ---------------------------------------------------------------------

@pytest.mark.parametrize("host, key", [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2::ffff", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("::1", "::/64"),
    ("/run/chatd.sock", "/run/chatd.sock"),
    ("?", "?"),
])
def test_address_key(host, key):
    assert address_key(host) == key


def test_address_key_other_prefix():
    assert address_key("2001:db8:1:2::1", ipv6_prefix=48) == "2001:db8:1::/48"
    assert address_key("2001:db8:1:2::1", ipv6_prefix=128) == "2001:db8:1:2::1/128"


# -- LeakyCounts ----------------------------------------------------------------------

def test_counts_fill_and_leak(clock):
    counts = LeakyCounts(clock, limit=5, window=900, max_entries=10)
    for _ in range(4):
        counts.charge("k")
        assert not counts.full("k")
    counts.charge("k")
    assert counts.full("k")
    clock.advance(179)
    assert counts.full("k")
    clock.advance(1)  # one leaks every 900 / 5 = 180 s
    assert not counts.full("k")
    clock.advance(900)
    assert counts.level("k") == 0


def test_drained_keys_are_forgotten(clock):
    counts = LeakyCounts(clock, limit=5, window=900, max_entries=1000)
    for i in range(100):
        counts.charge(f"k{i}")
    assert len(counts) == 100
    clock.advance(180)  # each held 1, which leaks in 180 s
    counts.charge("new")
    assert len(counts) == 1


def test_table_never_exceeds_max_entries_and_evicts_least_recent(clock):
    counts = LeakyCounts(clock, limit=5, window=900, max_entries=3)
    for key in "abc":
        counts.charge(key)
    counts.charge("a")  # a is now the most recent
    counts.charge("d")
    assert len(counts) == 3
    assert counts.level("b") == 0 and counts.level("a") == 2


def test_refund(clock):
    counts = LeakyCounts(clock, limit=2, window=60, max_entries=10)
    counts.charge("k")
    counts.charge("k")
    assert counts.full("k")
    counts.refund("k")
    assert not counts.full("k")
    counts.refund("k")
    counts.refund("k")  # never below nothing
    counts.refund("never seen")
    assert len(counts) == 0


# -- LoginThrottle ----------------------------------------------------------------------

def attacker_fails(throttle, conn, host, account, times):
    for _ in range(times):
        throttle.check(conn, host)
        throttle.failed(conn, host, account)


def test_one_connection_is_throttled_after_its_failures(clock):
    t = LoginThrottle(clock, per_conn=5, per_addr=20)
    attacker_fails(t, "c1", "198.51.100.9", "alice", 5)
    e = refused(t.check, "c1", "198.51.100.9")
    assert e.code == "login_throttled"
    # The refusal says nothing about when: no digits, no seconds.
    assert e.message == "too many failed logins; try again later"
    assert not any(ch.isdigit() for ch in e.message)
    # A new connection from the same address still has the address's allowance.
    t.check("c2", "198.51.100.9")


def test_one_address_is_throttled_across_connections(clock):
    t = LoginThrottle(clock, per_conn=5, per_addr=20)
    for c in range(4):
        attacker_fails(t, f"c{c}", "198.51.100.9", f"nick{c}", 5)
    assert refused(t.check, "fresh", "198.51.100.9").code == "login_throttled"


def test_owner_from_a_clean_address_gets_in_while_the_attacker_is_throttled(clock):
    t = LoginThrottle(clock, per_conn=5, per_addr=20, max_delay=2.0)
    attacker = ("evil", "198.51.100.9")
    attacker_fails(t, *attacker, "alice", 5)
    assert refused(t.check, *attacker).code == "login_throttled"
    # Slow attack: one more try whenever the bucket lets it, for a day.
    for _ in range(24 * 20):
        clock.advance(180)
        attacker_fails(t, *attacker, "alice", 1)
        assert refused(t.check, *attacker).code == "login_throttled"
    # The owner, elsewhere, is never refused; it waits the capped delay at most.
    t.check("owner", "203.0.113.5")
    assert t.delay("alice") <= 2.0
    t.succeeded("owner", "203.0.113.5")
    assert t.conns.level("owner") == 0 and t.addrs.level("203.0.113.5") == 0


def test_account_delay_grows_with_failures_from_many_addresses_and_is_capped(clock):
    t = LoginThrottle(clock, per_conn=5, per_addr=20, window=900, max_delay=2.0)
    assert t.delay("alice") == 0
    for i in range(10):
        attacker_fails(t, f"c{i}", f"10.0.{i}.1", "alice", 1)
    assert t.delay("alice") == pytest.approx(1.0)
    for i in range(100):
        attacker_fails(t, f"d{i}", f"10.1.{i}.1", "alice", 1)
    assert t.delay("alice") == pytest.approx(2.0)
    assert t.delay("bob") == 0
    clock.advance(900 + 45)
    assert t.delay("alice") == 0


def test_pause_waits_the_delay_on_the_clock(clock):
    t = LoginThrottle(clock, per_addr=20, window=900, max_delay=2.0)
    fired = []
    t.pause("alice").addCallback(fired.append)
    assert fired == [None]  # no failures: no wait at all
    for i in range(20):
        attacker_fails(t, f"c{i}", f"10.0.{i}.1", "alice", 1)
    fired = []
    t.pause("alice").addCallback(fired.append)
    clock.advance(1.9)
    assert fired == []
    clock.advance(0.1)
    assert fired == [None]


def test_parallel_attempts_count_before_their_hashes_finish(clock):
    t = LoginThrottle(clock, per_conn=5, per_addr=20)
    for _ in range(5):
        t.check("c1", "198.51.100.9")  # five logins in flight, none answered yet
    assert refused(t.check, "c1", "198.51.100.9").code == "login_throttled"


def test_success_and_abandon_give_the_attempt_back(clock):
    t = LoginThrottle(clock, per_conn=2, per_addr=20)
    for _ in range(10):
        t.check("c1", "h")
        t.succeeded("c1", "h")
        t.check("c1", "h")
        t.abandoned("c1", "h")
    assert len(t.conns) == 0 and len(t.addrs) == 0


def test_throttle_expires(clock):
    t = LoginThrottle(clock, per_conn=5, per_addr=20, window=900)
    attacker_fails(t, "c1", "h", "alice", 5)
    refused(t.check, "c1", "h")
    clock.advance(180)
    t.check("c1", "h")  # one more try after one leaks
    t.failed("c1", "h", "alice")
    refused(t.check, "c1", "h")
    clock.advance(900)
    for _ in range(5):
        t.check("c1", "h")


def test_forget_connection(clock):
    t = LoginThrottle(clock)
    attacker_fails(t, "c1", "h", "alice", 2)
    t.forget_connection("c1")
    t.forget_connection("never seen")
    assert len(t.conns) == 0 and len(t.addrs) == 1


def test_ipv6_hosts_in_one_slash_64_share_a_budget(clock):
    t = LoginThrottle(clock, per_conn=100, per_addr=20)
    for i in range(20):
        host = address_key(f"2001:db8:0:7::{i:x}")
        t.check(f"c{i}", host)
        t.failed(f"c{i}", host, "alice")
    assert refused(t.check, "c99", address_key("2001:db8:0:7:dead:beef::1")).code \
        == "login_throttled"
    t.check("c100", address_key("2001:db8:0:8::1"))


def test_memory_is_bounded_under_100000_distinct_nicks_and_addresses(clock):
    t = LoginThrottle(clock, per_conn=5, per_addr=20, max_entries=1000)
    for i in range(100_000):
        host = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        t.check(i, host)
        t.failed(i, host, f"nick{i}")
        clock.advance(0.001)
        assert len(t.conns) <= 1000 and len(t.addrs) <= 1000 and len(t.accounts) <= 1000
    assert len(t.conns) == len(t.addrs) == len(t.accounts) == 1000


def test_from_limits(clock):
    limits = Limits(login_fails_per_conn=2, login_fails_per_addr=3, login_window=60,
                    login_delay=0.5, throttle_entries=7)
    t = LoginThrottle.from_limits(clock, limits)
    assert (t.conns.limit, t.addrs.limit, t.max_delay, t.addrs.max_entries) == (2, 3, 0.5, 7)
    assert t.addrs.rate == pytest.approx(3 / 60)


# -- RegistrationThrottle -------------------------------------------------------------

def test_registrations_per_address(clock):
    r = RegistrationThrottle(clock, per_addr=3, window=3600, per_minute=100)
    for _ in range(3):
        r.check("198.51.100.9")
    e = refused(r.check, "198.51.100.9")
    assert e.code == "register_throttled"
    assert not any(ch.isdigit() for ch in e.message)
    r.check("203.0.113.5")  # another address is not affected
    clock.advance(1200)  # one more every 3600 / 3 s
    r.check("198.51.100.9")
    refused(r.check, "198.51.100.9")


def test_registrations_overall(clock):
    r = RegistrationThrottle(clock, per_addr=3, window=3600, per_minute=20)
    for i in range(20):
        r.check(f"10.0.0.{i}")
    assert refused(r.check, "10.0.1.1").code == "register_throttled"
    clock.advance(3)  # 20 per minute: one every 3 s
    r.check("10.0.1.1")
    refused(r.check, "10.0.1.2")


def test_parallel_registrations_count_at_once_and_refund(clock):
    r = RegistrationThrottle(clock, per_addr=3, window=3600, per_minute=20)
    for _ in range(3):
        r.check("h")  # three hashes in flight
    refused(r.check, "h")
    r.refund("h")  # one of them found the nick taken
    r.check("h")


def test_registration_table_is_bounded(clock):
    r = RegistrationThrottle(clock, per_addr=3, window=3600, per_minute=10**9,
                             max_entries=500)
    for i in range(100_000):
        r.check(f"host{i}")
    assert len(r.addrs) == 500 and len(r.overall) == 1


def test_registration_from_limits(clock):
    limits = Limits(register_per_addr=1, register_window=10, register_per_minute=2)
    r = RegistrationThrottle.from_limits(clock, limits)
    r.check("a")
    refused(r.check, "a")
    r.check("b")
    refused(r.check, "c")


def test_retuning_keeps_the_counts():
    from twisted.internet.task import Clock

    from chatd.throttle import LeakyCounts
    counts = LeakyCounts(Clock(), limit=3, window=60.0, max_entries=10)
    for _ in range(3):
        counts.charge("a")
    assert counts.full("a")
    counts.retune(limit=5, window=60.0, max_entries=10)
    assert counts.level("a") == 3 and not counts.full("a")
    counts.retune(limit=2, window=60.0, max_entries=10)
    assert counts.full("a")  # a reload that lowers the limit applies to counts so far
