"""The SQL store both back ends share: queries, group commit, faults and timeouts.

Queries run on the thread pool of ``twisted.enterprise.adbapi``, so the
reactor never waits on the disk or the network.

Every operation has a deadline (``timeout``).  Past it the caller's Deferred
fails with ``StoreUnavailable`` and the store turns unhealthy; the operation
is abandoned: if it has not started it never will, if it has not committed it
rolls back, and the connection it is blocked on is aborted from the reactor
thread (``abort_connection``: PostgreSQL shuts its socket down, which fails a
libpq call that would otherwise wait forever on a server that accepts but
never answers).  A pool thread still stuck after that is replaced by a spare
one (at most ``MAX_SPARE_THREADS``), so abandoned work cannot consume the
whole pool.  The limit: a write that was already committing when the deadline
passed may have committed although its caller was told it failed.
"""

import threading

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.metrics import NO_METRICS
from chatd.store import (
    Account,
    IStore,
    QueueFull,
    RoomRecord,
    ServerBan,
    StoredMessage,
    StoredPrivate,
    StoreRejected,
    StoreUnavailable,
    check_room_fields,
    check_room_list,
)
from chatd.store.migrations import SchemaTooNew, migrate

_DONE, _FAILED, _STALE, _SKIPPED = "done", "failed", "stale", "skipped"

# A burst larger than this is split over several transactions, so one commit
# (and the acks waiting on it) never grows without bound.
MAX_BATCH = 512

# Threads the pool may add while earlier ones are stuck in abandoned work.
MAX_SPARE_THREADS = 4

DEFAULT_TIMEOUT = 10.0


class _Abandoned(Exception):
    """The caller gave up (timeout) before this transaction could commit."""


class _Call:
    """One store operation as both threads see it: the connection it is using
    and whether its caller has given up.  ``lock`` makes "abandon and abort the
    connection" atomic with respect to the pool thread taking or releasing it."""

    __slots__ = ("lock", "conn", "started", "finished", "abandoned", "aborted", "stuck")

    def __init__(self):
        self.lock = threading.Lock()
        self.conn = None
        self.started = self.finished = self.abandoned = self.aborted = self.stuck = False


@implementer(IStore)
class SQLStore:
    log = Logger()
    dialect = None  # "sqlite" or "postgresql", set by the subclass
    pool_size = 1  # threads (and connections) in normal operation; subclasses set it
    metrics = NO_METRICS  # tap.py sets the daemon's chatd.metrics.Metrics

    def __init__(self, description: str, reactor=None, timeout: float = DEFAULT_TIMEOUT):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.timeout = timeout
        self.pool = None  # made by open(): building a store has no side effects
        self.description = description
        self.healthy = True
        self._pending = []  # (row, Deferred, with_prev) waiting for the next commit
        self._writing = None  # Deferred of the transaction in flight
        self._sql = {}
        self._stuck = 0  # pool threads still busy with abandoned work

    # -- plumbing ------------------------------------------------------------
    def q(self, sql: str) -> str:
        """Our SQL uses ``?``; psycopg2 wants ``%s``."""
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = sql.replace("?", "%s") if self.dialect == "postgresql" else sql
        return out

    def abort_connection(self, conn) -> None:
        """Make a call blocked on ``conn`` in another thread fail soon.

        Runs on the reactor thread and must not block.  The connection is
        discarded afterwards either way.
        """

    def _statements(self, *statements):
        """Run ``(sql, args)`` pairs in one transaction; fires None."""
        def q(txn):
            for sql, args in statements:
                txn.execute(sql, args)
        return self._run(q)

    def _run(self, interaction, *args):
        if self.pool is None or not self.pool.running:
            # A stopped thread pool would queue the work forever.
            return fail(StoreUnavailable(f"store {self.description} is closed"))
        call, d = _Call(), Deferred()
        timer = self.reactor.callLater(self.timeout, self._expire, call, d)
        self._attempt(call, d, timer, interaction, args, retry=True)
        d.addCallbacks(self._ok, self._fault)
        return d.addBoth(self.metrics.store_operation, self.reactor.seconds())

    def _attempt(self, call, d, timer, interaction, args, retry):
        t = deferToThreadPool(self.reactor, self.pool.threadpool, self._transaction,
                              call, interaction, args)
        t.addBoth(self._returned, call, d, timer, interaction, args, retry)

    def _transaction(self, call, interaction, args):
        """One transaction on a pool thread: ``(outcome, result or Failure)``.

        Instead of adbapi's runInteraction, which logs a traceback for every
        failed rollback on a dead connection (one per query during an outage):
        here a connection that cannot even roll back, or that was aborted, is
        dropped, and the next query opens a fresh one.  Failing to connect raises.
        """
        with call.lock:
            if call.abandoned:
                return _SKIPPED, None  # timed out while queued: never start it
            call.started = True
        conn = self.pool.connect()  # this thread's connection, opened if needed
        with call.lock:
            if call.abandoned:
                # Timed out while connecting (which libpq bounds itself); the
                # connection is fine and stays for the next call.
                call.finished = True
                return _SKIPPED, None
            call.conn = conn
        committing = False
        try:
            cursor = conn.cursor()
            result = interaction(cursor, *args)
            cursor.close()
            with call.lock:
                if call.abandoned:
                    raise _Abandoned()
                committing = True
            conn.commit()
            status, value = _DONE, result
        except BaseException:
            status, value = _FAILED, Failure()
        dead = False
        if status is _FAILED:
            try:
                conn.rollback()
            except BaseException:
                # A connection that died before the commit was sent committed
                # nothing: the query can safely run again on a new one.
                status = _FAILED if committing else _STALE
                dead = True
        with call.lock:
            # From here on the reactor can no longer abort this connection, so
            # closing it cannot race with a shutdown of its (reused) socket.
            call.conn = None
            call.finished = True
            drop = dead or call.aborted
        if drop:
            self.pool.disconnect(conn)
        return status, value

    def _returned(self, outcome, call, d, timer, interaction, args, retry):
        """Back on the reactor thread with what the pool thread did."""
        if call.stuck:
            call.stuck = False
            self._stuck -= 1
            self._resize()
        if isinstance(outcome, Failure):
            status, value = _FAILED, outcome  # connecting failed
        else:
            status, value = outcome
        if d.called:
            # Timed out: the caller was told already; this is only for the record.
            self.log.debug("store {store}: an abandoned operation ended ({status})",
                           store=self.description, status=status)
            return None
        if status is _STALE and retry:
            # Typically a pooled connection that died while idle (a restarted
            # server, a cut network): one more try on a fresh connection.
            with call.lock:
                call.started = call.finished = call.aborted = False
            return self._attempt(call, d, timer, interaction, args, retry=False)
        timer.cancel()
        if status is _DONE:
            d.callback(value)
        else:
            d.errback(value)
        return None

    def _expire(self, call, d):
        """The deadline passed: abandon the call and fail its caller."""
        with call.lock:
            call.abandoned = True
            running = call.started and not call.finished
            if call.conn is not None and not call.aborted:
                call.aborted = True
                try:
                    self.abort_connection(call.conn)
                except Exception:
                    self.log.failure("store {store}: could not abort a connection",
                                     store=self.description)
        if running:
            # Its thread may stay busy a while; lend the pool a spare meanwhile.
            call.stuck = True
            self._stuck += 1
            self._resize()
        self._went_down(f"no answer within {self.timeout:g} s")
        d.errback(StoreUnavailable(f"store {self.description} did not answer within "
                                   f"{self.timeout:g} s"))

    def _resize(self):
        if self.pool is None or not self.pool.running:
            return
        spare = min(self._stuck, MAX_SPARE_THREADS)
        self.pool.threadpool.adjustPoolsize(maxthreads=self.pool_size + spare)

    def _ok(self, result):
        if not self.healthy:
            self.healthy = True
            self.log.info("store {store} is available again", store=self.description)
        return result

    def _went_down(self, error, failure=None):
        """Mark the store unhealthy; log the first fault of an outage only."""
        if self.healthy:
            self.healthy = False
            if failure is None:
                # The database is down, unreachable or silent: expected, no traceback.
                self.log.error("store {store} failed ({error}); refusing what needs it until "
                               "it recovers", store=self.description, error=error)
            else:
                self.log.failure("store {store} failed; refusing what needs it until it "
                                 "recovers", failure, store=self.description)
        else:
            self.log.debug("store {store} still failing: {error}", store=self.description,
                           error=error)

    def _fault(self, failure: Failure):
        if failure.check(SchemaTooNew, StoreUnavailable, QueueFull):
            return failure
        dbapi = self.pool.dbapi
        if failure.check(dbapi.DataError, dbapi.IntegrityError, UnicodeError):
            # This data was refused; the database itself is fine.
            self.log.failure("store {store} refused a write", failure, store=self.description)
            raise StoreRejected(failure.getErrorMessage())
        expected = failure.check(dbapi.OperationalError, dbapi.InterfaceError)
        self._went_down(failure.getErrorMessage().strip(), None if expected else failure)
        raise StoreUnavailable(failure.getErrorMessage())

    # -- lifecycle ------------------------------------------------------------
    def make_pool(self) -> adbapi.ConnectionPool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Blocking set-up before the first connection; runs on a pool thread."""

    def open(self):
        self.pool = self.make_pool()
        self.pool.start()
        d = deferToThreadPool(self.reactor, self.pool.threadpool, self.prepare)

        def unprepared(failure):
            failure.trap(OSError)
            self._went_down(str(failure.value))
            raise StoreUnavailable(str(failure.value))
        d.addCallbacks(lambda _: self._run(lambda txn: migrate(txn, self.dialect)), unprepared)

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
                if self._stuck:
                    # Stopping the pool joins its threads: say why, should one hang.
                    self.log.warn("store {store}: closing with {count} thread(s) still busy "
                                  "with abandoned operations", store=self.description,
                                  count=self._stuck)
                self.pool.close()
        return d.addBoth(done)

    # -- messages: group commit ---------------------------------------------------
    # Group commit: one transaction for everything that queued behind the one in
    # flight.  With ``commit_window`` W (``--commit-window``), a batch that would
    # start less than W after the previous one waits until W has passed, so that
    # steady traffic, whose messages otherwise each commit (and fsync) alone,
    # shares commits too; a message after a quiet spell is never held.  Its
    # acknowledgement and delivery wait at most W longer; nothing is acknowledged
    # before it is committed.
    commit_window = 0.0  # chatd.tap sets the daemon's
    _last_batch = None  # reactor time the last batch started (with a window)
    _held = None  # the delayed call that starts a held batch

    def append_message(self, room_key, room, nick, text, kind, ts, with_prev=False):
        d = Deferred()
        self._pending.append(((room_key, room, nick, text, kind, ts), d, with_prev))
        if self._writing is None and self._held is None:
            wait = 0
            if self.commit_window and self._last_batch is not None:
                wait = self._last_batch + self.commit_window - self.reactor.seconds()
            if wait > 0:
                self._held = self.reactor.callLater(wait, self._release_held)
            else:
                self._flush_now()
        return d

    def _release_held(self):
        self._held = None
        if self._pending and self._writing is None:
            self._flush_now()

    def _flush_now(self):
        if self._held is not None:
            self._held.cancel()
            self._held = None
        if self.commit_window:
            self._last_batch = self.reactor.seconds()
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
        rows = [row for row, _, _ in batch]
        if any(with_prev for _, _, with_prev in batch):
            w = self._run(self._insert_messages, rows, True)
        else:
            w = self._run(self._insert_messages, rows)

        def committed(ids):
            for (_, d, with_prev), got in zip(batch, ids):
                if type(got) is tuple and not with_prev:
                    got = got[0]  # (id, prev): asked for by another message of the batch
                d.callback(got)

        def failed(failure):
            if failure.check(StoreRejected) and len(batch) > 1:
                # One message the database refuses must not sink the others that
                # shared its commit: write them one by one, in order (rare path).
                return self._write_one_by_one(batch)
            for _, d, _ in batch:
                d.errback(failure)
        return w.addCallbacks(committed, failed)

    def _write_one_by_one(self, batch):
        d = succeed(None)
        for item in batch:
            d.addCallback(lambda _, item=item: self._write_batch([item]))
        return d

    def lock_rooms(self, txn, room_keys) -> None:
        """Make message commits to these rooms wait for each other, in ``txn``.

        Nothing to do where one connection writes at a time (SQLite); a back
        end that several nodes write to at once overrides it (PostgreSQL)."""

    def _insert_messages(self, txn, rows, with_prev=False):
        # A cluster's nodes (the only ones asking for ``prev``) take ids under
        # the rooms' locks, so in each room they increase in commit order even
        # when several nodes write to it.  A single node commits one batch at a
        # time (_flush_now) and pays for no lock.
        if with_prev:
            self.lock_rooms(txn, {row[0] for row in rows})
        # One statement per row keeps ids in arrival order on both back ends
        # (a multi-row RETURNING has no ordering guarantee).
        sql = self.q("INSERT INTO messages (room_key, room, nick, text, kind, ts) "
                     "VALUES (?, ?, ?, ?, ?, ?) RETURNING id")
        # Each room's last id before this batch, read under its lock (so no
        # other node's commit can fall between it and ours): each message's
        # ``prev``, the chain a receiving node delivers in (index messages_room).
        # Asked for by a cluster's nodes only: a single node does not read it.
        prevs = dict.fromkeys({row[0] for row in rows}, 0)
        if with_prev:
            last = self.q("SELECT COALESCE(MAX(id), 0) FROM messages WHERE room_key = ?")
            for key in prevs:
                txn.execute(last, (key,))
                prevs[key] = txn.fetchone()[0]
        ids = []
        for row in rows:
            txn.execute(sql, row)
            mid = txn.fetchone()[0]
            ids.append((mid, prevs[row[0]]) if with_prev else mid)
            prevs[row[0]] = mid
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
        return self._run(lambda txn: txn.execute(sql, (password_hash, key)) and None)

    def account_keys(self):
        def q(txn):
            txn.execute("SELECT key FROM accounts")
            return [r[0] for r in txn.fetchall()]
        return self._run(q)

    # -- offline private messages -------------------------------------------------------
    def queue_private(self, to_key, nick, to, text, ts, cap=None):
        if cap is None:
            sql = self.q("INSERT INTO offline_privates (to_key, nick, to_nick, text, ts) "
                         "VALUES (?, ?, ?, ?, ?) RETURNING id")
            args = (to_key, nick, to, text, ts)
        else:
            # Counting and inserting in one statement; nothing is inserted when full.
            sql = self.q("INSERT INTO offline_privates (to_key, nick, to_nick, text, ts) "
                         "SELECT ?, ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM offline_privates "
                         "WHERE to_key = ?) < ? RETURNING id")
            args = (to_key, nick, to, text, ts, to_key, int(cap))

        def q(txn):
            if cap is not None and self.dialect == "postgresql":
                # Two nodes queueing for one recipient at once must not both see
                # room for one more (SQLite has a single writer already).
                txn.execute("SELECT pg_advisory_xact_lock(7366148, hashtext(%s))", (to_key,))
            txn.execute(sql, args)
            row = txn.fetchone()
            if row is None:
                raise QueueFull(f"{to_key} already has {cap} private messages queued")
            return row[0]
        return self._run(q)

    def pending_privates(self, to_key, limit=None):
        sql = ("SELECT id, nick, to_nick, text, ts FROM offline_privates "
               "WHERE to_key = ? ORDER BY id")
        args = [to_key]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        sql = self.q(sql)

        def q(txn):
            txn.execute(sql, args)
            return [StoredPrivate(*r) for r in txn.fetchall()]
        return self._run(q)

    def delete_privates(self, to_key, upto):
        sql = self.q("DELETE FROM offline_privates WHERE to_key = ? AND id <= ?")
        return self._run(lambda txn: txn.execute(sql, (to_key, upto)) and None)

    # -- rooms -----------------------------------------------------------------------------
    # Each method changes only what it names, so concurrent changes from several
    # nodes merge instead of the last whole-record write winning.
    def set_room_fields(self, key, name, fields):
        check_room_fields(fields)
        cols = sorted(fields)
        values = [int(fields[c]) if c == "invite_only" else fields[c] for c in cols]
        if cols:
            update = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in cols)
        else:
            update = "DO NOTHING"
        sql = self.q(f"INSERT INTO rooms (key, name{''.join(', ' + c for c in cols)}) "
                     f"VALUES (?, ?{', ?' * len(cols)}) ON CONFLICT (key) {update}")
        row = (key, name, *values)
        return self._run(lambda txn: txn.execute(sql, row) and None)

    def add_room_entry(self, key, name, list_name, entry):
        check_room_list(list_name)
        room = self.q("INSERT INTO rooms (key, name) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
        add = self.q("INSERT INTO room_entries (room_key, list, entry) VALUES (?, ?, ?) "
                     "ON CONFLICT DO NOTHING")
        return self._statements((room, (key, name)), (add, (key, list_name, entry)))

    def remove_room_entry(self, key, list_name, entry):
        check_room_list(list_name)
        sql = self.q("DELETE FROM room_entries WHERE room_key = ? AND list = ? AND entry = ?")
        return self._run(lambda txn: txn.execute(sql, (key, list_name, entry)) and None)

    def delete_room(self, key):
        entries = self.q("DELETE FROM room_entries WHERE room_key = ?")
        room = self.q("DELETE FROM rooms WHERE key = ?")
        return self._statements((entries, (key,)), (room, (key,)))

    def get_room(self, key):
        def q(txn):
            rooms = self._read_rooms(txn, key)
            return rooms[0] if rooms else None
        return self._run(q)

    def load_rooms(self):
        return self._run(self._read_rooms)

    def _read_rooms(self, txn, key=None):
        # (rooms.ops and rooms.bans are the unused pre-version-3 columns.)
        where, args = ("", ()) if key is None else (" WHERE key = ?", (key,))
        txn.execute(self.q("SELECT key, name, topic, topic_by, topic_ts, invite_only, password, "
                           f"created, owner FROM rooms{where} ORDER BY key"), args)
        rooms = {r[0]: RoomRecord(key=r[0], name=r[1], topic=r[2], topic_by=r[3],
                                  topic_ts=r[4], invite_only=bool(r[5]), password=r[6],
                                  created=r[7], owner=r[8])
                 for r in txn.fetchall()}
        where = "" if key is None else " WHERE room_key = ?"
        txn.execute(self.q(f"SELECT room_key, list, entry FROM room_entries{where}"), args)
        for room_key, list_name, entry in txn.fetchall():
            room = rooms.get(room_key)
            if room is not None and list_name in ("ops", "bans"):
                getattr(room, list_name).add(entry)
        return list(rooms.values())

    # -- server bans -------------------------------------------------------------------
    def add_server_ban(self, ban):
        sql = self.q("INSERT INTO server_bans (kind, target, until, by_nick, reason, created) "
                     "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, target) DO UPDATE SET "
                     "until = excluded.until, by_nick = excluded.by_nick, "
                     "reason = excluded.reason, created = excluded.created")
        row = (ban.kind, ban.target, ban.until, ban.by, ban.reason, ban.created)
        return self._run(lambda txn: txn.execute(sql, row) and None)

    def remove_server_ban(self, kind, target):
        sql = self.q("DELETE FROM server_bans WHERE kind = ? AND target = ?")

        def q(txn):
            txn.execute(sql, (kind, target))
            return txn.rowcount > 0
        return self._run(q)

    def server_bans(self, now):
        prune = self.q("DELETE FROM server_bans WHERE until <> 0 AND until <= ?")
        read = self.q("SELECT kind, target, until, by_nick, reason, created FROM server_bans "
                      "ORDER BY kind, target")

        def q(txn):
            txn.execute(prune, (now,))
            txn.execute(read)
            return [ServerBan(*r) for r in txn.fetchall()]
        return self._run(q)

    # -- resume tokens -----------------------------------------------------------------
    def create_resume_token(self, token_hash, key, expires, now):
        prune = self.q("DELETE FROM resume_tokens WHERE account_key = ? AND expires <= ?")
        insert = self.q("INSERT INTO resume_tokens (token_hash, account_key, expires) "
                        "VALUES (?, ?, ?)")
        return self._statements((prune, (key, now)), (insert, (token_hash, key, expires)))

    def take_resume_token(self, token_hash, now):
        # DELETE ... RETURNING: the row goes in the statement that reads it, so two
        # connections presenting one token cannot both have it (SQLite >= 3.35).
        sql = self.q("DELETE FROM resume_tokens WHERE token_hash = ? "
                     "RETURNING account_key, expires")

        def q(txn):
            txn.execute(sql, (token_hash,))
            row = txn.fetchone()
            return row[0] if row is not None and row[1] > now else None
        return self._run(q)

    def exchange_resume_token(self, token_hash, new_hash, key, expires, now):
        take = self.q("DELETE FROM resume_tokens WHERE token_hash = ? "
                      "RETURNING account_key, expires")
        prune = self.q("DELETE FROM resume_tokens WHERE account_key = ? AND expires <= ?")
        insert = self.q("INSERT INTO resume_tokens (token_hash, account_key, expires) "
                        "VALUES (?, ?, ?)")

        def q(txn):
            txn.execute(take, (token_hash,))
            row = txn.fetchone()
            if row is None or row[0] != key or row[1] <= now:
                return False
            txn.execute(prune, (key, now))
            txn.execute(insert, (new_hash, key, expires))
            return True
        return self._run(q)

    def revoke_resume_tokens(self, key):
        sql = self.q("DELETE FROM resume_tokens WHERE account_key = ?")

        def q(txn):
            txn.execute(sql, (key,))
            return max(txn.rowcount, 0)
        return self._run(q)
