"""The SQL store both back ends share: queries, group commit, fault handling.

Everything runs through ``twisted.enterprise.adbapi``, so queries happen on
the pool's threads and the reactor never waits on the disk or the network.
"""

import json

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.store import (
    Account,
    IStore,
    RoomRecord,
    StoredMessage,
    StoredPrivate,
    StoreRejected,
    StoreUnavailable,
)
from chatd.store.migrations import SchemaTooNew, migrate

_DONE, _FAILED, _STALE = "done", "failed", "stale"

# A burst larger than this is split over several transactions, so one commit
# (and the acks waiting on it) never grows without bound.
MAX_BATCH = 512


@implementer(IStore)
class SQLStore:
    log = Logger()
    dialect = None  # "sqlite" or "postgresql", set by the subclass
    reactor = None  # the subclass's, or the global one

    def __init__(self, description: str):
        self.pool = None  # made by open(): building a store has no side effects
        self.description = description
        self.healthy = True
        self._pending = []  # (row, Deferred) waiting for the next commit
        self._writing = None  # Deferred of the transaction in flight
        self._sql = {}

    # -- plumbing ------------------------------------------------------------
    def q(self, sql: str) -> str:
        """Our SQL uses ``?``; psycopg2 wants ``%s``."""
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = sql.replace("?", "%s") if self.dialect == "postgresql" else sql
        return out

    def _run(self, interaction, *args, retry=True):
        if self.pool is None or not self.pool.running:
            # A stopped thread pool would queue the work forever.
            return fail(StoreUnavailable(f"store {self.description} is closed"))
        reactor = self.reactor
        if reactor is None:
            from twisted.internet import reactor
        d = deferToThreadPool(reactor, self.pool.threadpool, self._transaction,
                              interaction, args)
        d.addCallback(self._settle, interaction, args, retry)
        d.addCallbacks(self._ok, self._fault)
        return d

    def _transaction(self, interaction, args):
        """One transaction on a pool thread: ``(outcome, result or Failure)``.

        Instead of adbapi's runInteraction, which logs a traceback for every
        failed rollback on a dead connection (one per query during an outage):
        here a connection that cannot even roll back is dropped, and the next
        query opens a fresh one.  Failing to connect raises.
        """
        conn = self.pool.connect()  # this thread's connection, opened if needed
        committing = False
        try:
            cursor = conn.cursor()
            result = interaction(cursor, *args)
            cursor.close()
            committing = True
            conn.commit()
            return _DONE, result
        except BaseException:
            failure = Failure()
        try:
            conn.rollback()
        except BaseException:
            self.pool.disconnect(conn)
            # A connection that died before the commit was sent committed
            # nothing: the query can safely run again on a new one.
            return (_FAILED if committing else _STALE), failure
        return _FAILED, failure

    def _settle(self, outcome, interaction, args, retry):
        status, value = outcome
        if status is _DONE:
            return value
        if status is _STALE and retry:
            # Typically a pooled connection that died while idle (a restarted
            # server, a cut network): one more try on a fresh connection.
            return self._run(interaction, *args, retry=False)
        return value  # the Failure

    def _ok(self, result):
        if not self.healthy:
            self.healthy = True
            self.log.info("store {store} is available again", store=self.description)
        return result

    def _fault(self, failure: Failure):
        if failure.check(SchemaTooNew, StoreUnavailable):
            return failure
        dbapi = self.pool.dbapi
        if failure.check(dbapi.DataError, dbapi.IntegrityError, UnicodeError):
            # This data was refused; the database itself is fine.
            self.log.failure("store {store} refused a write", failure, store=self.description)
            raise StoreRejected(failure.getErrorMessage())
        if self.healthy:
            self.healthy = False
            if failure.check(dbapi.OperationalError, dbapi.InterfaceError):
                # The database is down or unreachable: expected, no traceback.
                self.log.error("store {store} failed ({error}); refusing what needs it until "
                               "it recovers", store=self.description,
                               error=failure.getErrorMessage().strip())
            else:
                self.log.failure("store {store} failed; refusing what needs it until it "
                                 "recovers", failure, store=self.description)
        else:
            self.log.debug("store {store} still failing: {error}", store=self.description,
                           error=failure.getErrorMessage())
        raise StoreUnavailable(failure.getErrorMessage())

    # -- lifecycle ------------------------------------------------------------
    def make_pool(self) -> adbapi.ConnectionPool:
        raise NotImplementedError

    def open(self):
        self.pool = self.make_pool()
        self.pool.start()
        d = self._run(lambda txn: migrate(txn, self.dialect))

        def opened(versions):
            before, after = versions
            if before != after:
                self.log.info("store {store}: schema upgraded from version {before} to {after}",
                              store=self.description, before=before, after=after)
            return after
        return d.addCallback(opened)

    def close(self):
        d = self._writing or succeed(None)

        def done(_):
            if self._pending:
                # Arrived after the last batch started: let them commit first.
                return self._flush_now().addBoth(done)
            if self.pool is not None and self.pool.running:
                self.pool.close()
        return d.addBoth(done)

    # -- messages: group commit ---------------------------------------------------
    def append_message(self, room_key, room, nick, text, kind, ts):
        d = Deferred()
        self._pending.append(((room_key, room, nick, text, kind, ts), d))
        if self._writing is None:
            self._flush_now()
        return d

    def _flush_now(self):
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        self._writing = w = self._write_batch(batch)

        def next_batch(_):
            self._writing = None
            if self._pending:
                self._flush_now()
        w.addBoth(next_batch)
        return w

    def _write_batch(self, batch):
        """Commit ``batch`` in one transaction; fire each message's Deferred."""
        w = self._run(self._insert_messages, [row for row, _ in batch])

        def committed(ids):
            for (_, d), mid in zip(batch, ids):
                d.callback(mid)

        def failed(failure):
            if failure.check(StoreRejected) and len(batch) > 1:
                # One message the database refuses must not sink the others that
                # shared its commit: write them one by one, in order (rare path).
                return self._write_one_by_one(batch)
            for _, d in batch:
                d.errback(failure)
        return w.addCallbacks(committed, failed)

    def _write_one_by_one(self, batch):
        d = succeed(None)
        for item in batch:
            d.addCallback(lambda _, item=item: self._write_batch([item]))
        return d

    def _insert_messages(self, txn, rows):
        # One statement per row keeps ids in arrival order on both back ends
        # (a multi-row RETURNING has no ordering guarantee).
        sql = self.q("INSERT INTO messages (room_key, room, nick, text, kind, ts) "
                     "VALUES (?, ?, ?, ?, ?, ?) RETURNING id")
        ids = []
        for row in rows:
            txn.execute(sql, row)
            ids.append(txn.fetchone()[0])
        return ids

    def last_mid(self):
        def q(txn):
            txn.execute("SELECT COALESCE(MAX(id), 0) FROM messages")
            return txn.fetchone()[0]
        return self._run(q)

    def history(self, room_key, before=None, since=None, upto=None, limit=50):
        where, args = ["room_key = ?"], [room_key]
        if upto is not None:
            where.append("id <= ?")
            args.append(upto)
        if since is not None:
            where.append("id > ?")
            args.append(since)
            order = "ASC"
        else:
            if before is not None:
                where.append("id < ?")
                args.append(before)
            order = "DESC"
        sql = self.q(f"SELECT id, room, nick, text, kind, ts FROM messages "
                     f"WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?")
        args.append(int(limit))

        def q(txn):
            txn.execute(sql, args)
            rows = [StoredMessage(*r) for r in txn.fetchall()]
            if order == "DESC":
                rows.reverse()
            return rows
        return self._run(q)

    # -- accounts -----------------------------------------------------------------
    def create_account(self, key, nick, password_hash, ts):
        sql = self.q("INSERT INTO accounts (key, nick, password_hash, created) "
                     "VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING")

        def q(txn):
            txn.execute(sql, (key, nick, password_hash, ts))
            return txn.rowcount == 1
        return self._run(q)

    def get_account(self, key):
        sql = self.q("SELECT key, nick, password_hash, created FROM accounts WHERE key = ?")

        def q(txn):
            txn.execute(sql, (key,))
            row = txn.fetchone()
            return Account(*row) if row else None
        return self._run(q)

    def set_password(self, key, password_hash):
        sql = self.q("UPDATE accounts SET password_hash = ? WHERE key = ?")
        return self._run(lambda txn: txn.execute(sql, (password_hash, key)))

    def account_keys(self):
        def q(txn):
            txn.execute("SELECT key FROM accounts")
            return [r[0] for r in txn.fetchall()]
        return self._run(q)

    # -- offline private messages -------------------------------------------------------
    def queue_private(self, to_key, nick, to, text, ts):
        sql = self.q("INSERT INTO offline_privates (to_key, nick, to_nick, text, ts) "
                     "VALUES (?, ?, ?, ?, ?) RETURNING id")

        def q(txn):
            txn.execute(sql, (to_key, nick, to, text, ts))
            return txn.fetchone()[0]
        return self._run(q)

    def pending_privates(self, to_key):
        sql = self.q("SELECT id, nick, to_nick, text, ts FROM offline_privates "
                     "WHERE to_key = ? ORDER BY id")

        def q(txn):
            txn.execute(sql, (to_key,))
            return [StoredPrivate(*r) for r in txn.fetchall()]
        return self._run(q)

    def delete_privates(self, to_key, upto):
        sql = self.q("DELETE FROM offline_privates WHERE to_key = ? AND id <= ?")
        return self._run(lambda txn: txn.execute(sql, (to_key, upto)))

    # -- rooms -----------------------------------------------------------------------------
    def save_room(self, record: RoomRecord):
        sql = self.q(
            "INSERT INTO rooms (key, name, topic, topic_by, topic_ts, invite_only, password, "
            "ops, bans, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET name = excluded.name, topic = excluded.topic, "
            "topic_by = excluded.topic_by, topic_ts = excluded.topic_ts, "
            "invite_only = excluded.invite_only, password = excluded.password, "
            "ops = excluded.ops, bans = excluded.bans")
        row = (record.key, record.name, record.topic, record.topic_by, record.topic_ts,
               int(record.invite_only), record.password, json.dumps(sorted(record.ops)),
               json.dumps(sorted(record.bans)), record.created)
        return self._run(lambda txn: txn.execute(sql, row))

    def load_rooms(self):
        def q(txn):
            txn.execute("SELECT key, name, topic, topic_by, topic_ts, invite_only, password, "
                        "ops, bans, created FROM rooms ORDER BY key")
            return [RoomRecord(key=r[0], name=r[1], topic=r[2], topic_by=r[3], topic_ts=r[4],
                               invite_only=bool(r[5]), password=r[6], ops=set(json.loads(r[7])),
                               bans=set(json.loads(r[8])), created=r[9])
                    for r in txn.fetchall()]
        return self._run(q)

    # TEMPORARY: change-based room writes over the JSON columns (replaced by the
    # store branch's entries table).
    def set_room_fields(self, key, name, fields):
        cols = sorted(fields)
        vals = [int(fields[c]) if c == "invite_only" else fields[c] for c in cols]
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols)
        sql = self.q(f"INSERT INTO rooms (key, name{''.join(', ' + c for c in cols)}) "
                     f"VALUES (?, ?{', ?' * len(cols)}) ON CONFLICT (key) DO UPDATE SET {sets}")
        return self._run(lambda txn: txn.execute(sql, (key, name, *vals)))

    def _edit_list(self, key, name, list_name, entry, present):
        ins = self.q("INSERT INTO rooms (key, name) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
        sel = self.q(f"SELECT {list_name} FROM rooms WHERE key = ?")
        upd = self.q(f"UPDATE rooms SET {list_name} = ? WHERE key = ?")

        def q(txn):
            txn.execute(ins, (key, name or key))
            txn.execute(sel, (key,))
            entries = set(json.loads(txn.fetchone()[0]))
            (entries.add if present else entries.discard)(entry)
            txn.execute(upd, (json.dumps(sorted(entries)), key))
        return self._run(q)

    def add_room_entry(self, key, name, list_name, entry):
        return self._edit_list(key, name, list_name, entry, True)

    def remove_room_entry(self, key, list_name, entry):
        return self._edit_list(key, None, list_name, entry, False)
