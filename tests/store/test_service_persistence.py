"""The chat service on a real SQLite store, driven in memory (no sockets).

What the integration tests cannot time precisely: messages committed while a
join reads its history, a session's requests queued behind one in flight,
and the login throttle on a fake clock.
"""

import os
import shutil
import tempfile

from fakes import FakeSink
from twisted.internet import defer, reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from chatd.dispatch import Dispatcher
from chatd.events import Ack, Error, Join, Message
from chatd.limits import Limits
from chatd.passwords import Argon2Params, Passwords
from chatd.service import ChatService
from chatd.store import MAX_PAGE
from chatd.store.sqlite import SQLiteStore

Sink = FakeSink  # keeps the events themselves


class ServiceOnSQLite(TestCase):
    @inlineCallbacks
    def setUp(self):
        path = tempfile.mkdtemp(prefix="chatd-svc-")
        self.addCleanup(shutil.rmtree, path, True)
        self.store = SQLiteStore(os.path.join(path, "chat.sqlite3"))
        passwords = Passwords(reactor, Argon2Params(time_cost=1, memory_cost=1024,
                                                    parallelism=1))
        passwords.start()
        self.addCleanup(passwords.stop)
        self.chat = ChatService(Limits(rate=1000.0, burst=1000, coalesce_window=0), clock=reactor,
                                store=self.store, history=3, passwords=passwords)
        self.dispatcher = Dispatcher(self.chat)
        yield self.chat.load()
        self.addCleanup(self.store.close)

    def connect(self, nick):
        sink = Sink()
        session = self.chat.connect(sink, "10.1.1.1")
        self.chat.set_nick(session, nick)
        sink.take()
        return sink, session

    @inlineCallbacks
    def test_message_committed_during_a_join_comes_after_the_history_once(self):
        a, alice = self.connect("alice")
        yield self.chat.join(alice, "#r")
        for i in range(4):
            yield self.chat.say(alice, "#r", f"old {i}")
        b, bob = self.connect("bob")
        yield task.deferLater(reactor, 0, lambda: None)  # the last commit has settled
        # Not yet committed when bob's join takes its snapshot; committed (and
        # broadcast) before bob's history has been read.
        during = self.chat.say(alice, "#r", "during the join")
        joining = self.chat.join(bob, "#r")
        yield defer.gatherResults([joining, during])
        got = b.take()
        history = [e for e in got if isinstance(e, Message) and e.history]
        self.assertEqual([m.text for m in history], ["old 1", "old 2", "old 3"])
        live = [e for e in got if isinstance(e, Message) and not e.history]
        self.assertEqual([m.text for m in live], ["during the join"])
        self.assertEqual(got.index(live[0]), 3)  # right after the history
        self.assertIsInstance(got[-1], Join)
        self.assertGreater(live[0].mid, history[-1].mid)

    @inlineCallbacks
    def test_join_since_is_capped_with_more(self):
        a, alice = self.connect("alice")
        yield self.chat.join(alice, "#big")
        yield defer.gatherResults(
            [self.chat.say(alice, "#big", f"m{i}") for i in range(MAX_PAGE + 5)])
        b, bob = self.connect("bob")
        ack = yield self.chat.join(bob, "#big", since=0)
        self.assertTrue(ack.more)
        history = [e for e in b.take() if isinstance(e, Message)]
        self.assertEqual(len(history), MAX_PAGE)
        self.assertEqual(history[0].text, "m0")

    @inlineCallbacks
    def test_requests_behind_one_in_flight_keep_their_order(self):
        sink = Sink()
        session = self.chat.connect(sink, "10.1.1.2")
        sink.take()
        for req in ({"type": "nick", "nick": "zed", "id": 1},
                    {"type": "join", "room": "#q", "id": 2},
                    {"type": "message", "room": "#q", "text": "right after", "id": 3},
                    {"type": "who", "id": 4}):
            self.dispatcher.handle(session, req)
        while len([e for e in sink.payloads if isinstance(e, (Ack, Error))]) < 4:
            d = defer.Deferred()
            reactor.callLater(0.01, d.callback, None)
            yield d
        answers = [e for e in sink.payloads if isinstance(e, (Ack, Error))]
        self.assertEqual([(type(e), e.id) for e in answers],
                         [(Ack, 1), (Ack, 2), (Ack, 3), (Ack, 4)])
        self.assertEqual(answers[2].data.mid,
                         [e for e in sink.payloads if isinstance(e, Message)][0].mid)

    @inlineCallbacks
    def test_a_burst_of_messages_is_committed_together_and_answered_in_order(self):
        sink = Sink()
        session = self.chat.connect(sink, "10.1.1.3")
        self.chat.set_nick(session, "burst")
        yield self.chat.join(session, "#b")
        sink.take()
        for i in range(5):
            self.dispatcher.handle(session, {"type": "message", "room": "#b",
                                             "text": f"m{i}", "id": i})
        # All five reach the store before the first commits: one write in
        # flight, four waiting for the next group commit.
        self.assertEqual(len(self.store._pending), 4)
        # A part must not overtake them.
        self.dispatcher.handle(session, {"type": "part", "room": "#b", "id": "p"})
        self.assertEqual(len(self.store._pending), 4)
        while not any(isinstance(e, Ack) and e.id == "p" for e in sink.payloads):
            d = defer.Deferred()
            reactor.callLater(0.01, d.callback, None)
            yield d
        got = sink.take()
        texts = [e.text for e in got if isinstance(e, Message)]
        self.assertEqual(texts, [f"m{i}" for i in range(5)])
        acks = [e for e in got if isinstance(e, Ack)]
        self.assertEqual([a.id for a in acks], [0, 1, 2, 3, 4, "p"])
        mids = [a.data.mid for a in acks[:5]]
        self.assertEqual(mids, sorted(mids))
        self.assertEqual(mids, [e.mid for e in got if isinstance(e, Message)])

    @inlineCallbacks
    def test_store_failure_refuses_the_message_and_tells_nobody(self):
        a, alice = self.connect("alice")
        b, bob = self.connect("bob")
        yield self.chat.join(alice, "#r")
        yield self.chat.join(bob, "#r")
        a.take()
        b.take()
        yield self.store.close()  # the database goes away under the service
        self.dispatcher.handle(alice, {"type": "message", "room": "#r", "text": "lost?",
                                       "id": 9})
        while not a.payloads:
            d = defer.Deferred()
            reactor.callLater(0.01, d.callback, None)
            yield d
        [error] = a.take()
        self.assertEqual((error.code, error.id), ("store_unavailable", 9))
        self.assertEqual([x for x in b.take() if isinstance(x, Message)], [])
        self.flushLoggedErrors()
