"""Two chat services on one PostgreSQL database, as two nodes of a cluster are.

What the shared database alone must give them (no bus between them here):
a password changed on one node is the one a login on the other checks, and
room-state changes made on both at once are all kept for either to load.
"""

import pytest
from fakes import FakeSink
from twisted.internet import defer, reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from chatd.errors import ChatError
from chatd.limits import Limits
from chatd.passwords import Argon2Params, Passwords
from chatd.service import ChatService
from chatd.store.postgres import PostgresStore


@pytest.mark.usefixtures("pg_url")
class TwoNodesOnePostgres(TestCase):
    pg_url = None  # set by the fixture

    @inlineCallbacks
    def node(self):
        store = PostgresStore(self.pg_url)
        passwords = Passwords(reactor, Argon2Params(time_cost=1, memory_cost=1024,
                                                    parallelism=1))
        passwords.start()
        self.addCleanup(passwords.stop)
        chat = ChatService(Limits(rate=1000.0, burst=1000, coalesce_window=0), clock=reactor,
                           store=store, passwords=passwords)
        yield chat.load()
        self.addCleanup(store.close)
        return chat

    def connect(self, chat, nick, host):
        sink = FakeSink()
        session = chat.connect(sink, host)
        chat.set_nick(session, nick)
        sink.take()
        return session

    @inlineCallbacks
    def test_login_on_b_checks_the_password_changed_on_a(self):
        a, b = (yield self.node()), (yield self.node())  # b loaded before alice registered
        on_a = self.connect(a, "alice", "10.0.0.1")
        yield a.register(on_a, "first secret")
        yield a.change_password(on_a, "first secret", "second secret")
        on_b = self.connect(b, "visitor", "10.0.0.2")
        with self.assertRaises(ChatError) as refused:
            yield b.login(on_b, "alice", "first secret")
        self.assertEqual(refused.exception.code, "login_failed")
        ack = yield b.login(on_b, "alice", "second secret")
        self.assertEqual(ack.nick, "alice")
        # And back again: b changes it, a's next login checks b's.
        yield b.change_password(on_b, "second secret", "third secret")
        again = self.connect(a, "other", "10.0.0.3")
        with self.assertRaises(ChatError):
            yield a.login(again, "alice", "second secret")
        self.assertEqual((yield a.login(again, "alice", "third secret")).nick, "alice")

    @inlineCallbacks
    def logged_in(self, chat, nick, host, room=None):
        session = self.connect(chat, f"guest{host.rpartition('.')[2]}", host)
        yield chat.login(session, nick, f"{nick} password")
        if room is not None:
            yield chat.join(session, room)
        return session

    @inlineCallbacks
    def test_a_ban_on_a_and_an_op_on_b_at_once_are_both_kept(self):
        first = yield self.node()
        for n, nick in enumerate(("alice", "bob", "carol")):
            yield first.register(self.connect(first, nick, f"10.0.1.{n}"), f"{nick} password")
        alice = yield self.logged_in(first, "alice", "10.0.1.10", "#shared")  # creator: op
        yield first.keep(alice, "#shared")
        bob = yield self.logged_in(first, "bob", "10.0.1.11", "#shared")
        yield first.op(alice, "#shared", "bob")
        # Two nodes that both loaded the kept room; alice on one, bob on the other.
        a, b = (yield self.node()), (yield self.node())
        alice = yield self.logged_in(a, "alice", "10.0.2.1", "#shared")
        bob = yield self.logged_in(b, "bob", "10.0.2.2", "#shared")
        yield self.logged_in(b, "carol", "10.0.2.3", "#shared")
        # At the same moment: a ban on A, an operator on B.
        yield defer.gatherResults([a.ban(alice, "#shared", "mallory"),
                                   b.op(bob, "#shared", "carol")])
        c = yield self.node()  # a node (re)started afterwards loads both
        state = c.room_states.get("#shared")
        self.assertEqual(state.bans, {"mallory"})
        self.assertEqual(state.ops, {"alice", "bob", "carol"})
