"""The behaviour every IStore must have; each back end's test module runs it.

``StoreContract`` is what every provider shares, the in-memory one included:
a subclass provides ``make_store()`` (a new, unopened store on the same
database each call).  ``SQLStoreContract`` adds what only the SQL back ends
have (transactions, schema migrations) and needs ``raw_connection()`` (a
DB-API connection to that database, for building old schemas and checking
what is really on disk).
"""

import itertools

from twisted.internet import defer, task
from twisted.internet.defer import inlineCallbacks
from zope.interface.verify import verifyObject

from chatd.store import (
    MAX_PAGE,
    IStore,
    QueueFull,
    ServerBan,
    StoreRejected,
    StoreUnavailable,
)
from chatd.store.migrations import LATEST, migrate


class StoreContract:
    dialect = None

    def make_store(self):
        raise NotImplementedError

    @inlineCallbacks
    def opened(self):
        store = self.make_store()
        self.addCleanup(store.close)
        version = yield store.open()
        self.assertEqual(version, LATEST)
        return store

    # -- lifecycle ------------------------------------------------------------
    @inlineCallbacks
    def test_provides_interface_and_reopens_at_latest_version(self):
        store = yield self.opened()
        verifyObject(IStore, store)
        yield store.close()
        again = yield self.opened()
        self.assertEqual((yield again.last_mid()), 0)

    # -- messages ---------------------------------------------------------------
    @inlineCallbacks
    def test_a_message_the_database_refuses_does_not_sink_its_batch(self):
        store = yield self.opened()
        texts = ["first", "bad \udc80", "third"]  # a lone surrogate cannot be encoded
        ds = [store.append_message("#a", "#A", "n", t, "message", 1.0) for t in texts]
        results = yield defer.DeferredList(ds, consumeErrors=True)
        (ok1, mid1), (ok2, why), (ok3, mid3) = results
        self.assertTrue(ok1 and ok3 and not ok2)
        self.assertTrue(why.check(StoreRejected))
        self.assertLess(mid1, mid3)
        self.assertTrue(store.healthy)
        rows = yield store.history("#a", limit=10)
        self.assertEqual([r.text for r in rows], ["first", "third"])
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_ids_increase_in_arrival_order_across_rooms(self):
        store = yield self.opened()
        fired = []
        ds = []
        for i in range(200):
            d = store.append_message(f"#r{i % 2}", f"#R{i % 2}", f"n{i % 3}", f"text {i}",
                                     "message", 1000.0 + i)
            d.addCallback(lambda mid, i=i: fired.append((i, mid)) or mid)
            ds.append(d)
        mids = yield defer.gatherResults(ds)
        self.assertEqual([i for i, _ in fired], list(range(200)))
        self.assertEqual(mids, sorted(mids))
        self.assertEqual(len(set(mids)), 200)
        self.assertEqual((yield store.last_mid()), mids[-1])
        rows = yield store.history("#r0", limit=500)
        self.assertEqual([m.text for m in rows], [f"text {i}" for i in range(0, 200, 2)])
        self.assertEqual([m.mid for m in rows], mids[0::2])
        self.assertEqual((rows[1].nick, rows[1].room, rows[1].ts), ("n2", "#R0", 1002.0))

    @inlineCallbacks
    def test_history_pages_back_and_forward_per_room(self):
        store = yield self.opened()
        mids = []
        for i in range(10):
            mids.append((yield store.append_message("#a", "#a", "x", f"a{i}", "message", i)))
            yield store.append_message("#b", "#b", "y", f"b{i}", "action", i)
        last3 = yield store.history("#a", limit=3)
        self.assertEqual([m.text for m in last3], ["a7", "a8", "a9"])
        before = yield store.history("#a", before=last3[0].mid, limit=3)
        self.assertEqual([m.text for m in before], ["a4", "a5", "a6"])
        since = yield store.history("#a", since=mids[2], limit=4)
        self.assertEqual([m.text for m in since], ["a3", "a4", "a5", "a6"])
        bounded = yield store.history("#a", since=mids[6], upto=mids[8], limit=50)
        self.assertEqual([m.text for m in bounded], ["a7", "a8"])
        upto = yield store.history("#a", upto=mids[1], limit=50)
        self.assertEqual([m.text for m in upto], ["a0", "a1"])
        b = yield store.history("#b", limit=1)
        self.assertEqual((b[0].text, b[0].kind), ("b9", "action"))
        self.assertEqual((yield store.history("#nothing", limit=5)), [])
        self.assertGreater(MAX_PAGE, 0)

    @inlineCallbacks
    def test_each_message_knows_its_rooms_previous_id(self):
        store = yield self.opened()
        # Two rooms interleaved, most in one group commit; one does not ask.
        got = yield defer.gatherResults(
            [store.append_message(f"#r{i % 2}", "#r", "n", f"t{i}", "message", i,
                                  with_prev=i != 4) for i in range(8)])
        self.assertIsInstance(got[4], int)  # not asked: the id alone, as ever
        m = [g if i == 4 else g[0] for i, g in enumerate(got)]
        prevs = {g[0]: g[1] for i, g in enumerate(got) if i != 4}
        # Each one's prev is its room's message just before it; 0 for the first.
        self.assertEqual(prevs, {m[0]: 0, m[2]: m[0], m[6]: m[4],
                                 m[1]: 0, m[3]: m[1], m[5]: m[3], m[7]: m[5]})
        later = yield store.append_message("#r0", "#r", "n", "later", "message", 9.0,
                                           with_prev=True)
        self.assertEqual(later[1], m[6])

    @inlineCallbacks
    def test_messages_survive_close_and_reopen(self):
        store = yield self.opened()
        ds = [store.append_message("#a", "#a", "x", f"m{i}", "message", i) for i in range(30)]
        # close() waits for the group commit in flight and for what queued behind it.
        yield store.close()
        mids = yield defer.gatherResults(ds)
        again = yield self.opened()
        rows = yield again.history("#a", limit=100)
        self.assertEqual([m.mid for m in rows], mids)

    # -- accounts ----------------------------------------------------------------
    @inlineCallbacks
    def test_accounts(self):
        store = yield self.opened()
        self.assertTrue((yield store.create_account("alice", "Alice", "h1", 5.0)))
        self.assertFalse((yield store.create_account("alice", "ALICE", "h2", 6.0)))
        acct = yield store.get_account("alice")
        self.assertEqual((acct.key, acct.nick, acct.password_hash, acct.created),
                         ("alice", "Alice", "h1", 5.0))
        self.assertIsNone((yield store.get_account("bob")))
        yield store.set_password("alice", "h3")
        self.assertEqual((yield store.get_account("alice")).password_hash, "h3")
        yield store.create_account("bob", "bob", "hb", 7.0)
        self.assertEqual(sorted((yield store.account_keys())), ["alice", "bob"])

    # -- offline private messages -----------------------------------------------------
    @inlineCallbacks
    def test_offline_privates_in_order_and_deleted_once_delivered(self):
        store = yield self.opened()
        ids = []
        for i in range(3):
            ids.append((yield store.queue_private("bob", "alice", "Bob", f"p{i}", float(i))))
        yield store.queue_private("carol", "alice", "carol", "other", 9.0)
        pending = yield store.pending_privates("bob")
        self.assertEqual([(p.nick, p.to, p.text) for p in pending],
                         [("alice", "Bob", "p0"), ("alice", "Bob", "p1"), ("alice", "Bob", "p2")])
        self.assertEqual([p.pid for p in pending], ids)
        yield store.delete_privates("bob", ids[1])
        self.assertEqual([p.text for p in (yield store.pending_privates("bob"))], ["p2"])
        self.assertEqual(len((yield store.pending_privates("carol"))), 1)

    @inlineCallbacks
    def test_offline_privates_capped_per_recipient(self):
        store = yield self.opened()
        for i in range(3):
            yield store.queue_private("bob", "mallory", "bob", f"p{i}", float(i), cap=3)
        with self.assertRaises(QueueFull) as caught:
            yield store.queue_private("bob", "mallory", "bob", "one too many", 4.0, cap=3)
        self.assertNotIsInstance(caught.exception, StoreUnavailable)
        self.assertTrue(store.healthy)  # a full queue is not a database fault
        self.assertEqual([p.text for p in (yield store.pending_privates("bob"))],
                         ["p0", "p1", "p2"])
        # Per recipient; and without a cap nothing is refused.
        yield store.queue_private("carol", "mallory", "carol", "fine", 5.0, cap=3)
        yield store.queue_private("bob", "alice", "bob", "uncapped", 6.0)
        self.assertEqual(len((yield store.pending_privates("bob"))), 4)
        # Delivering frees room again.
        pending = yield store.pending_privates("bob")
        yield store.delete_privates("bob", pending[1].pid)
        yield store.queue_private("bob", "alice", "bob", "fits again", 7.0, cap=3)

    @inlineCallbacks
    def test_pending_privates_limit_gives_the_oldest(self):
        store = yield self.opened()
        ids = []
        for i in range(5):
            ids.append((yield store.queue_private("bob", "a", "bob", f"p{i}", float(i))))
        first = yield store.pending_privates("bob", limit=2)
        self.assertEqual([p.pid for p in first], ids[:2])
        yield store.delete_privates("bob", first[-1].pid)
        self.assertEqual([p.text for p in (yield store.pending_privates("bob", limit=2))],
                         ["p2", "p3"])
        self.assertEqual(len((yield store.pending_privates("bob", limit=50))), 3)
        self.assertEqual((yield store.pending_privates("nobody", limit=2)), [])

    # -- rooms ---------------------------------------------------------------------------
    @inlineCallbacks
    def test_room_changes_round_trip(self):
        store = yield self.opened()
        yield store.set_room_fields("#ops", "#Ops", {
            "topic": "hi", "topic_by": "alice", "topic_ts": 3.0, "invite_only": True,
            "password": "sekrit", "created": 1.0, "owner": "alice"})
        yield store.add_room_entry("#ops", "#Ops", "ops", "alice")
        yield store.add_room_entry("#ops", "#Ops", "bans", "mallory")
        yield store.set_room_fields("#other", "#other", {"created": 2.0})
        # Only the named fields change; the name stays the one the room was created with.
        yield store.set_room_fields("#ops", "#OPS", {"topic": "changed", "invite_only": False})
        yield store.add_room_entry("#ops", "#Ops", "ops", "bob")
        yield store.add_room_entry("#ops", "#Ops", "ops", "alice")  # idempotent
        yield store.remove_room_entry("#ops", "bans", "mallory")
        yield store.remove_room_entry("#ops", "bans", "never-banned")
        # An entry creates the room it belongs to.
        yield store.add_room_entry("#new", "#New", "bans", "eve")
        yield store.close()
        again = yield self.opened()
        rooms = {r.key: r for r in (yield again.load_rooms())}
        self.assertEqual(set(rooms), {"#ops", "#other", "#new"})
        ops = rooms["#ops"]
        self.assertEqual((ops.name, ops.topic, ops.topic_by, ops.topic_ts, ops.invite_only,
                          ops.password, ops.ops, ops.bans, ops.created, ops.owner),
                         ("#Ops", "changed", "alice", 3.0, False, "sekrit", {"alice", "bob"},
                          set(), 1.0, "alice"))
        self.assertEqual((rooms["#other"].ops, rooms["#other"].bans, rooms["#other"].created),
                         (set(), set(), 2.0))
        new = rooms["#new"]
        self.assertEqual((new.name, new.topic, new.invite_only, new.bans, new.created),
                         ("#New", "", False, {"eve"}, 0.0))
        self.assertEqual((yield again.get_room("#ops")), ops)
        self.assertIsNone((yield again.get_room("#nowhere")))

    @inlineCallbacks
    def test_delete_room_forgets_row_and_entries(self):
        store = yield self.opened()
        yield store.set_room_fields("#gone", "#gone", {"topic": "t"})
        yield store.add_room_entry("#gone", "#gone", "ops", "alice")
        yield store.add_room_entry("#kept", "#kept", "ops", "alice")
        yield store.delete_room("#gone")
        yield store.delete_room("#never-existed")
        self.assertIsNone((yield store.get_room("#gone")))
        self.assertEqual([r.key for r in (yield store.load_rooms())], ["#kept"])
        # A room made again under the same key starts clean.
        yield store.set_room_fields("#gone", "#gone", {})
        self.assertEqual((yield store.get_room("#gone")).ops, set())

    @inlineCallbacks
    def test_unknown_room_fields_and_lists_are_refused(self):
        store = yield self.opened()
        with self.assertRaises(ValueError):
            store.set_room_fields("#r", "#r", {"ops": ["alice"]})
        with self.assertRaises(ValueError):
            store.add_room_entry("#r", "#r", "voices", "alice")
        with self.assertRaises(ValueError):
            store.remove_room_entry("#r", "owners", "alice")
        self.assertIsNone((yield store.get_room("#r")))

    @inlineCallbacks
    def test_concurrent_changes_from_two_nodes_merge(self):
        # Two stores on one database stand for two nodes.  Whatever order their
        # changes arrive in, and with none waiting for another, all are kept.
        a = yield self.opened()
        b = yield self.opened()
        changes = [
            lambda key: a.add_room_entry(key, key, "bans", "mallory"),
            lambda key: b.add_room_entry(key, key, "ops", "bob"),
            lambda key: a.set_room_fields(key, key, {"topic": "from a", "topic_by": "alice"}),
            lambda key: b.set_room_fields(key, key, {"invite_only": True}),
        ]
        keys = []
        ds = []
        for n, order in enumerate(itertools.permutations(changes)):
            key = f"#room{n}"
            keys.append(key)
            ds.extend(change(key) for change in order)
        yield defer.gatherResults(ds)
        for reader in (a, b):
            for key in keys:
                room = yield reader.get_room(key)
                self.assertEqual((room.bans, room.ops, room.topic, room.topic_by,
                                  room.invite_only),
                                 ({"mallory"}, {"bob"}, "from a", "alice", True), key)

    # -- server bans ----------------------------------------------------------------------
    @inlineCallbacks
    def test_server_bans_round_trip_replace_and_survive_reopen(self):
        store = yield self.opened()
        perm = ServerBan("nick", "mallory", 0, "root", "spam", 10.0)
        timed = ServerBan("addr", "10.0.0.0/8", 500.0, "root", "", 11.0)
        yield store.add_server_ban(perm)
        yield store.add_server_ban(timed)
        # Banning the same thing again replaces the ban (no duplicate row).
        longer = ServerBan("addr", "10.0.0.0/8", 900.0, "admin", "again", 12.0)
        yield store.add_server_ban(longer)
        yield store.close()
        store = yield self.opened()
        self.assertEqual((yield store.server_bans(100.0)), [longer, perm])
        self.assertTrue((yield store.remove_server_ban("nick", "mallory")))
        self.assertFalse((yield store.remove_server_ban("nick", "mallory")))
        self.assertEqual((yield store.server_bans(100.0)), [longer])

    @inlineCallbacks
    def test_expired_server_bans_are_ignored_and_pruned(self):
        store = yield self.opened()
        yield store.add_server_ban(ServerBan("account", "bob", 50.0, "root", "", 1.0))
        yield store.add_server_ban(ServerBan("account", "eve", 0, "root", "", 1.0))
        self.assertEqual([b.target for b in (yield store.server_bans(49.0))], ["bob", "eve"])
        self.assertEqual([b.target for b in (yield store.server_bans(50.0))], ["eve"])
        # Pruned, not only hidden: asking about an earlier time does not bring it back.
        self.assertEqual([b.target for b in (yield store.server_bans(0.0))], ["eve"])

    # -- resume tokens ------------------------------------------------------------------
    @inlineCallbacks
    def test_resume_token_is_taken_once_and_survives_reopen(self):
        store = yield self.opened()
        yield store.create_resume_token("h1", "alice", 100.0, 1.0)
        yield store.close()
        store = yield self.opened()
        self.assertEqual((yield store.take_resume_token("h1", 50.0)), "alice")
        self.assertIsNone((yield store.take_resume_token("h1", 50.0)))
        self.assertIsNone((yield store.take_resume_token("nope", 50.0)))

    @inlineCallbacks
    def test_expired_resume_token_is_refused_and_gone(self):
        store = yield self.opened()
        yield store.create_resume_token("h1", "alice", 100.0, 1.0)
        self.assertIsNone((yield store.take_resume_token("h1", 100.0)))
        yield store.create_resume_token("h2", "alice", 100.0, 1.0)
        # Making another token of the account prunes its expired ones.
        yield store.create_resume_token("h3", "alice", 300.0, 150.0)
        self.assertEqual((yield store.revoke_resume_tokens("alice")), 1)

    @inlineCallbacks
    def test_revoke_resume_tokens_takes_every_token_of_one_account(self):
        store = yield self.opened()
        yield store.create_resume_token("a1", "alice", 100.0, 1.0)
        yield store.create_resume_token("a2", "alice", 100.0, 1.0)
        yield store.create_resume_token("b1", "bob", 100.0, 1.0)
        self.assertEqual((yield store.revoke_resume_tokens("alice")), 2)
        self.assertEqual((yield store.revoke_resume_tokens("alice")), 0)
        self.assertIsNone((yield store.take_resume_token("a1", 2.0)))
        self.assertEqual((yield store.take_resume_token("b1", 2.0)), "bob")

    @inlineCallbacks
    def test_exchanging_a_resume_token_takes_it_and_keeps_the_new_one(self):
        store = yield self.opened()
        yield store.create_resume_token("h1", "alice", 100.0, 1.0)
        yield store.create_resume_token("old", "alice", 10.0, 1.0)  # expires at 10
        self.assertIs((yield store.exchange_resume_token("h1", "h2", "alice", 200.0, 50.0)),
                      True)
        self.assertIsNone((yield store.take_resume_token("h1", 60.0)))  # spent
        # Refused: spent, unknown, another account's, expired; no new token kept.
        self.assertIs((yield store.exchange_resume_token("h1", "x1", "alice", 200.0, 60.0)),
                      False)
        yield store.create_resume_token("b1", "bob", 100.0, 1.0)
        self.assertIs((yield store.exchange_resume_token("b1", "x2", "alice", 200.0, 60.0)),
                      False)
        yield store.create_resume_token("e1", "alice", 70.0, 1.0)
        self.assertIs((yield store.exchange_resume_token("e1", "x3", "alice", 200.0, 80.0)),
                      False)
        self.assertIsNone((yield store.take_resume_token("b1", 60.0)))  # taken all the same
        # The new one works; the account's expired one was pruned on the way.
        self.assertEqual((yield store.take_resume_token("h2", 150.0)), "alice")
        self.assertEqual((yield store.revoke_resume_tokens("alice")), 0)

    @inlineCallbacks
    def test_concurrent_takes_of_one_token_give_it_once(self):
        store = yield self.opened()
        other = yield self.opened()  # another node on the same database
        yield store.create_resume_token("h", "alice", 100.0, 1.0)
        got = yield defer.gatherResults([store.take_resume_token("h", 2.0),
                                         other.take_resume_token("h", 2.0)])
        self.assertEqual(sorted(got, key=str), [None, "alice"])

    @inlineCallbacks
    def test_closed_store_is_unavailable(self):
        store = yield self.opened()
        yield store.close()
        with self.assertRaises(StoreUnavailable):
            yield store.get_account("alice")


class SQLStoreContract(StoreContract):
    """What the SQL back ends add: transactions and schema migrations."""

    def raw_connection(self):
        raise NotImplementedError

    @inlineCallbacks
    def test_group_commit_batches_what_queued_behind_a_write(self):
        store = yield self.opened()
        transactions = []
        insert = store._insert_messages

        def counting(txn, rows):
            transactions.append(len(rows))
            return insert(txn, rows)
        store._insert_messages = counting
        mids = yield defer.gatherResults(
            [store.append_message("#a", "#A", "n", f"t{i}", "message", 1.0) for i in range(200)])
        self.assertEqual(mids, sorted(mids))
        # The first message went alone; everything that queued behind it shared
        # far fewer transactions than one each.
        self.assertEqual(sum(transactions), 200)
        self.assertLess(len(transactions), 20)

    @inlineCallbacks
    def test_commit_window_holds_close_messages_for_one_commit(self):
        from twisted.internet import reactor
        store = yield self.opened()
        store.commit_window = window = 0.3
        transactions = []
        insert = store._insert_messages

        def counting(txn, rows, *more):
            transactions.append((reactor.seconds(), len(rows)))
            return insert(txn, rows, *more)
        store._insert_messages = counting
        # After a quiet spell: committed at once, not held.
        first = yield store.append_message("#a", "#A", "n", "t0", "message", 1.0)
        yield task.deferLater(reactor, 0, lambda: None)  # the next messages come later
        started = transactions[0][0]
        # Within the window of that commit: held, then one commit for all of them,
        # no sooner than the window after the first, and nothing lost or reordered.
        rest = yield defer.gatherResults(
            [store.append_message("#a", "#A", "n", f"t{i}", "message", 1.0) for i in range(1, 6)])
        self.assertEqual([n for _, n in transactions], [1, 5])
        self.assertGreaterEqual(transactions[1][0] - started, window * 0.99)
        self.assertEqual([first, *rest], sorted([first, *rest]))
        page = yield store.history("#a", limit=10)
        self.assertEqual([m.text for m in page][-6:], [f"t{i}" for i in range(6)])

    @inlineCallbacks
    def test_close_commits_what_the_commit_window_holds(self):
        store = yield self.opened()
        store.commit_window = 30.0  # far longer than the test
        from twisted.internet import reactor
        yield store.append_message("#a", "#A", "n", "first", "message", 1.0)
        yield task.deferLater(reactor, 0, lambda: None)
        held = store.append_message("#a", "#A", "n", "held", "message", 1.0)
        self.assertFalse(held.called)
        yield store.close()
        self.assertTrue(held.called)
        again = yield self.opened()
        page = yield again.history("#a", limit=10)
        self.assertEqual([m.text for m in page][-2:], ["first", "held"])

    # -- migrations ------------------------------------------------------------------------
    @inlineCallbacks
    def test_upgrades_a_version_1_database_in_place(self):
        conn = self.raw_connection()
        cur = conn.cursor()
        self.assertEqual(migrate(cur, self.dialect, target=1), (0, 1))
        p = "%s" if self.dialect == "postgresql" else "?"
        cur.execute("INSERT INTO messages (room_key, room, nick, text, kind, ts) "
                    f"VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
                    ("#old", "#Old", "ann", "from version 1", "message", 1.0))
        cur.execute(f"INSERT INTO accounts VALUES ({p}, {p}, {p}, {p})",
                    ("ann", "Ann", "hash", 1.0))
        conn.commit()
        conn.close()
        store = yield self.opened()
        old = yield store.history("#old", limit=10)
        self.assertEqual([(m.nick, m.text) for m in old], [("ann", "from version 1")])
        self.assertEqual((yield store.get_account("ann")).nick, "Ann")
        # What version 2 added works, and new ids continue after the old ones.
        self.assertEqual((yield store.load_rooms()), [])
        yield store.queue_private("ann", "bob", "Ann", "hi", 2.0)
        mid = yield store.append_message("#old", "#Old", "bob", "new", "message", 2.0)
        self.assertGreater(mid, old[0].mid)
        conn = self.raw_connection()
        cur = conn.cursor()
        cur.execute("SELECT version FROM schema_version")
        self.assertEqual(cur.fetchall(), [(LATEST,)])
        conn.close()

    @inlineCallbacks
    def test_upgrades_version_2_room_lists_to_entries(self):
        conn = self.raw_connection()
        cur = conn.cursor()
        self.assertEqual(migrate(cur, self.dialect, target=2), (0, 2))
        p = "%s" if self.dialect == "postgresql" else "?"
        rows = [("#ops", "#Ops", "hi", 1, '["alice", "bob"]', '["mallory", "eve"]', 1.0),
                ("#plain", "#plain", "", 0, "[]", "[]", 2.0),
                ("#bansonly", "#BansOnly", "", 0, "[]", '["troll"]', 3.0)]
        for row in rows:
            cur.execute("INSERT INTO rooms (key, name, topic, invite_only, ops, bans, created) "
                        f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})", row)
        conn.commit()
        conn.close()
        store = yield self.opened()
        rooms = {r.key: r for r in (yield store.load_rooms())}
        self.assertEqual(set(rooms), {"#ops", "#plain", "#bansonly"})
        ops = rooms["#ops"]
        self.assertEqual((ops.name, ops.topic, ops.invite_only, ops.ops, ops.bans, ops.created),
                         ("#Ops", "hi", True, {"alice", "bob"}, {"mallory", "eve"}, 1.0))
        self.assertEqual((rooms["#plain"].ops, rooms["#plain"].bans), (set(), set()))
        self.assertEqual((rooms["#bansonly"].ops, rooms["#bansonly"].bans), (set(), {"troll"}))
        # And the upgraded entries are changed like any other.
        yield store.remove_room_entry("#ops", "bans", "eve")
        yield store.add_room_entry("#ops", "#Ops", "ops", "carol")
        room = yield store.get_room("#ops")
        self.assertEqual((room.ops, room.bans), ({"alice", "bob", "carol"}, {"mallory"}))
