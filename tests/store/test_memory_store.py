"""The store contract on MemoryStore, and the interface on all three back ends."""

from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from chatd.store import IStore
from chatd.store.memory import MemoryDatabase, MemoryStore
from chatd.store.migrations import LATEST
from chatd.store.postgres import PostgresStore
from chatd.store.sqlite import SQLiteStore

from .contract import StoreContract


class MemoryContract(StoreContract, TestCase):
    def setUp(self):
        self.database = MemoryDatabase()

    def make_store(self):
        # Stores on one MemoryDatabase share it, as reopening a file would.
        return MemoryStore(self.database)


class MemorySpecifics(TestCase):
    def test_answers_synchronously(self):
        store = MemoryStore()
        self.assertEqual(self.successResultOf(store.open()), LATEST)
        mid = self.successResultOf(store.append_message("#a", "#a", "n", "hi", "message", 1.0))
        self.assertEqual([m.mid for m in self.successResultOf(store.history("#a"))], [mid])

    def test_rooms_handed_out_are_copies(self):
        store = MemoryStore()
        store.open()
        store.add_room_entry("#a", "#a", "ops", "alice")
        room = self.successResultOf(store.get_room("#a"))
        room.ops.add("mallory")
        self.assertEqual(self.successResultOf(store.get_room("#a")).ops, {"alice"})


class AllBackEnds(TestCase):
    def test_every_back_end_provides_istore(self):
        for store in (MemoryStore(), SQLiteStore("/nonexistent/unused.sqlite3"),
                      PostgresStore("postgresql://u@127.0.0.1/unused")):
            self.assertTrue(verifyObject(IStore, store), store)
