"""Cluster presence: who holds which nick, and who is in which room, on every node.

Single node (no ``--redis``): ``LocalPresence``, where every claim is granted
and nobody else exists.  Clustered: ``ClusterPresence`` keeps in Redis, under
the link's prefix (``chatd.redislink``):

``node:ID``
    this node is alive: a string that expires ``2/3 * --node-timeout`` after
    the node's last heartbeat (two heartbeats: one may be missed);
``nodes``
    the set of node ids that have claims or members;
``nick:KEY``
    the claim on a nick (``KEY`` is its lower-case form): ``NODE\\tNick``.
    A claim is taken when it is free, is already this node's, or belongs to a
    node whose ``node:ID`` key has expired: one Lua script, so two nodes racing
    for one nick cannot both win;
``nodenicks:ID``
    the nick keys node ``ID`` claims (what a reaper frees when it dies);
``room:KEY``
    a room's members on every node: nick key -> ``NODE\\tNick``;
``noderooms:ID``
    the rooms node ``ID`` has members in: room key -> ``COUNT\\tName``.

Only the node's alive key expires, so a heartbeat is one ``SET ... PX`` plus one
check of the other nodes, whatever the number of users.  A node whose alive
key has gone is dead: the first survivor to notice (a ``SREM`` on ``nodes``
decides who) deletes its claims and memberships and shows each of its users
quitting to everyone in their rooms, through the bus, once.  Survivors check on
every heartbeat (``--node-timeout / 3``), so a dead node's users are gone from
everyone's view within ``--node-timeout``.

A room message never reads or writes presence: only nick changes, joins, parts,
quits and the listings (``/who``, ``/rooms``) do.

While Redis is unreachable a claim cannot be checked: ``claim`` fails with
``cluster_unavailable`` and the listings hold this node's members only.  When
the link is back, ``resync`` re-publishes this node's nicks and memberships
from its own state; a nick another node claimed meanwhile stays with that node
and the local holder is renamed (the service's ``conflict`` callback).
"""

from twisted.internet.defer import fail, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatd.errors import ChatError

SEP = "\t"

# Shared by the scripts below: the owner in a ``NODE\tNick`` value, and
# forgetting every claim and membership of a node (returns its members as a
# flat list: room key, nick, ...).
LIB = """
local function owner(v)
  return string.match(v, '^([^\\t]*)')
end
local function forget(p, x)
  local out = {}
  for _, rk in ipairs(redis.call('HKEYS', p .. 'noderooms:' .. x)) do
    local h = redis.call('HGETALL', p .. 'room:' .. rk)
    for i = 1, #h, 2 do
      if owner(h[i + 1]) == x then
        redis.call('HDEL', p .. 'room:' .. rk, h[i])
        out[#out + 1] = rk
        out[#out + 1] = string.sub(h[i + 1], #x + 2)
      end
    end
  end
  redis.call('DEL', p .. 'noderooms:' .. x)
  for _, k in ipairs(redis.call('SMEMBERS', p .. 'nodenicks:' .. x)) do
    local cur = redis.call('GET', p .. 'nick:' .. k)
    if cur and owner(cur) == x then
      redis.call('DEL', p .. 'nick:' .. k)
    end
  end
  redis.call('DEL', p .. 'nodenicks:' .. x)
  return out
end
"""

# KEYS: none (one Redis, not Redis Cluster); ARGV: prefix, node, nick key, nick,
# force ("1": the claim is this node's whoever had it, as when an account's owner
# logs in here and takes its own nick).
# 1: the claim is this node's now; 0: a live node holds it.
CLAIM = """
local p, me, k = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('GET', p .. 'nick:' .. k)
if cur then
  local owner = string.match(cur, '^([^\\t]*)')
  if ARGV[5] ~= '1' and owner ~= me and redis.call('EXISTS', p .. 'node:' .. owner) == 1 then
    return 0
  end
  if owner ~= me then
    redis.call('SREM', p .. 'nodenicks:' .. owner, k)
  end
end
redis.call('SET', p .. 'nick:' .. k, me .. '\\t' .. ARGV[4])
redis.call('SADD', p .. 'nodenicks:' .. me, k)
return 1
"""

# ARGV: prefix, node, nick key.  Frees the claim if it is this node's.
RELEASE = """
local p, me, k = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('GET', p .. 'nick:' .. k)
if cur and string.match(cur, '^([^\\t]*)') == me then
  redis.call('DEL', p .. 'nick:' .. k)
end
redis.call('SREM', p .. 'nodenicks:' .. me, k)
return 1
"""

# ARGV: prefix, node, room key, room name, local member count, then pairs of
# (nick key, nick) to add and, after a '--', nick keys to remove.
MEMBERS = """
local p, me, rk = ARGV[1], ARGV[2], ARGV[3]
local i, adding = 6, true
while i <= #ARGV do
  if ARGV[i] == '--' then
    adding = false
    i = i + 1
  elseif adding then
    redis.call('HSET', p .. 'room:' .. rk, ARGV[i], me .. '\\t' .. ARGV[i + 1])
    i = i + 2
  else
    local cur = redis.call('HGET', p .. 'room:' .. rk, ARGV[i])
    if cur and string.match(cur, '^([^\\t]*)') == me then
      redis.call('HDEL', p .. 'room:' .. rk, ARGV[i])
    end
    i = i + 1
  end
end
if tonumber(ARGV[5]) > 0 then
  redis.call('HSET', p .. 'noderooms:' .. me, rk, ARGV[5] .. '\\t' .. ARGV[4])
else
  redis.call('HDEL', p .. 'noderooms:' .. me, rk)
end
return 1
"""

# ARGV: prefix, node, alive ttl (ms).  Refreshes this node; returns the nodes
# whose alive key has gone.
BEAT = """
local p, me = ARGV[1], ARGV[2]
redis.call('SET', p .. 'node:' .. me, '1', 'PX', ARGV[3])
redis.call('SADD', p .. 'nodes', me)
local dead = {}
for _, n in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if redis.call('EXISTS', p .. 'node:' .. n) == 0 then
    dead[#dead + 1] = n
  end
end
return dead
"""

# ARGV: prefix, dead node.  Only the first caller gets the dead node's
# members, as a flat list (room key, nick, ...); everyone else gets {}.
REAP = LIB + """
local p, x = ARGV[1], ARGV[2]
if redis.call('EXISTS', p .. 'node:' .. x) == 1 then return {} end
if redis.call('SREM', p .. 'nodes', x) == 0 then return {} end
return forget(p, x)
"""

# ARGV: prefix, node, alive ttl, then the node's nicks as (key, nick) pairs.
# Drops every claim and membership the node had, refreshes it, and re-claims
# the nicks: returns the keys that a live node holds now (conflicts) and
# whether the node had been reaped while away (1) or not (0).
RESYNC = LIB + """
local p, me = ARGV[1], ARGV[2]
local reaped = redis.call('SISMEMBER', p .. 'nodes', me) == 0 and 1 or 0
forget(p, me)
redis.call('SET', p .. 'node:' .. me, '1', 'PX', ARGV[3])
redis.call('SADD', p .. 'nodes', me)
local lost = {}
for i = 4, #ARGV, 2 do
  local k = ARGV[i]
  local cur = redis.call('GET', p .. 'nick:' .. k)
  local owner = cur and string.match(cur, '^([^\\t]*)')
  if owner and owner ~= me and redis.call('EXISTS', p .. 'node:' .. owner) == 1 then
    lost[#lost + 1] = k
  else
    redis.call('SET', p .. 'nick:' .. k, me .. '\\t' .. ARGV[i + 1])
    redis.call('SADD', p .. 'nodenicks:' .. me, k)
  end
end
return {lost, reaped}
"""


# ARGV: prefix, node, room key.  The room's members on the other live nodes.
WHO = LIB + """
local p, me = ARGV[1], ARGV[2]
local h = redis.call('HGETALL', p .. 'room:' .. ARGV[3])
local out, alive = {}, {}
for i = 1, #h, 2 do
  local x = owner(h[i + 1])
  if x ~= me then
    if alive[x] == nil then
      alive[x] = redis.call('EXISTS', p .. 'node:' .. x) == 1
    end
    if alive[x] then
      out[#out + 1] = string.sub(h[i + 1], #x + 2)
    end
  end
end
return out
"""

# ARGV: prefix, node.  Every other live node's rooms (room key, COUNT\tName).
ROOMS = """
local p, me = ARGV[1], ARGV[2]
local out = {}
for _, x in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if x ~= me and redis.call('EXISTS', p .. 'node:' .. x) == 1 then
    out[#out + 1] = redis.call('HGETALL', p .. 'noderooms:' .. x)
  end
end
return out
"""

# ARGV: prefix, node.  A clean stop: everything this node had goes now.
REAP_SELF = LIB + """
redis.call('DEL', ARGV[1] .. 'node:' .. ARGV[2])
redis.call('SREM', ARGV[1] .. 'nodes', ARGV[2])
forget(ARGV[1], ARGV[2])
return 1
"""


def unavailable() -> ChatError:
    return ChatError("cluster_unavailable", "the cluster cannot be reached right now, so this "
                     "cannot be checked; try again shortly (chatting goes on meanwhile)")


def _s(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


class LocalPresence:
    """One node: every nick nobody here holds is free, and nobody else is anywhere."""

    clustered = False

    def bind(self, local, lost, conflict, back=None) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self):
        return succeed(None)

    def claim(self, key: str, nick: str):
        return succeed(True)

    def assert_claim(self, key: str, nick: str, force: bool = False) -> None:
        pass

    def release(self, key: str) -> None:
        pass

    def room_changed(self, room, added=(), removed=()) -> None:
        pass

    def members_changed(self, room_key, room_name, count, added=(), removed=()) -> None:
        pass

    def who(self, room_key: str):
        return succeed([])

    def rooms(self):
        return succeed({})


class ClusterPresence:
    """Nick claims and room membership shared through Redis (see the module docstring).

    ``link`` is a ``chatd.redislink.RedisLink`` (``command``, ``key``,
    ``add_listener``, ``up``).  The service binds three callables: ``local()``
    returns this node's state as ``({nick key: nick}, {room key: (name,
    {nick key: nick})})``; ``lost(nick, room_keys)`` shows a dead node's user
    quitting; ``conflict(key)`` renames a local holder whose claim another node
    took while Redis was away.
    """

    clustered = True
    log = Logger()

    def __init__(self, link, node_id: str, clock, node_timeout: float = 10.0):
        if SEP in node_id or not node_id:
            raise ValueError("a node id is a non-empty name without tabs")
        self.link = link
        self.node = node_id
        self.clock = clock
        self.node_timeout = node_timeout
        self.prefix = link.key("")
        self._local = lambda: ({}, {})
        self._lost = lambda nick, keys: None
        self._conflict = lambda key: None
        self._back = None
        self._synced = False  # this node's state is in Redis (false until up, and after down)
        self._was_synced = False
        self._was_synced_before = False
        self._resyncing = False
        self._beat = LoopingCall(self.beat)
        self._beat.clock = clock
        link.add_listener(self._link_up, self._link_down)

    # -- timing ------------------------------------------------------------------
    @property
    def interval(self) -> float:
        """Seconds between heartbeats: a third of the bound."""
        return self.node_timeout / 3.0

    @property
    def alive_ms(self) -> int:
        """How long a node's alive key outlives its last heartbeat: two heartbeats."""
        return max(1, int(self.interval * 2 * 1000))

    # -- lifecycle ---------------------------------------------------------------
    def bind(self, local, lost, conflict, back=None) -> None:
        """``back()``, if given: this node had been given up as dead (its users
        shown quitting elsewhere) and is in the cluster again, state rewritten."""
        self._local, self._lost, self._conflict = local, lost, conflict
        self._back = back

    def start(self) -> None:
        d = self._beat.start(self.interval, now=False)
        d.addErrback(lambda f: self.log.failure("presence heartbeat loop stopped", f))
        if self.link.up:
            self.resync()

    def stop(self):
        """Leave the cluster cleanly: free every claim now, not at expiry."""
        if self._beat.running:
            self._beat.stop()
        if not self.link.up:
            return succeed(None)
        d = self._eval(REAP_SELF, self.node)
        d.addErrback(lambda f: self.log.failure("presence: leaving the cluster failed", f))
        return d

    def _link_up(self) -> None:
        self.resync()

    def _link_down(self) -> None:
        self._synced = False

    # -- Redis -------------------------------------------------------------------
    def _eval(self, script: str, *args):
        """Run a script with ``ARGV = prefix, *args``; fails with cluster_unavailable
        at once while the link is down."""
        if not self.link.up:
            return fail(unavailable())
        return self.link.command("EVAL", script, 0, self.prefix, *args)

    # -- nicks -------------------------------------------------------------------
    def claim(self, key: str, nick: str):
        """Fires True if the nick is this node's now, False if a live node holds it;
        fails with ``cluster_unavailable`` when that cannot be known."""
        if not self._synced:
            return fail(unavailable())
        d = self._eval(CLAIM, self.node, key, nick, "0")

        def answered(reply):
            return bool(int(reply))

        def failed(f):
            if not f.check(ChatError):
                self.log.warn("presence: claiming a nick failed: {error}",
                              error=f.getErrorMessage())
                raise unavailable()
            return f
        return d.addCallbacks(answered, failed)

    def assert_claim(self, key: str, nick: str, force: bool = False) -> None:
        """A nick this node gave out without asking (a guest name): claimed now;
        if a live node holds it, the ``conflict`` callback renames the local
        holder.  ``force`` (an account's owner logged in here): taken whoever
        holds it.  While unsynced, the resync claims it."""
        if not self._synced:
            return
        d = self._eval(CLAIM, self.node, key, nick, "1" if force else "0")

        def answered(reply):
            if not int(reply):
                self.log.warn("presence: nick {key} is held on another node; its holder "
                              "here is renamed", key=key)
                self._conflict(key)
        d.addCallbacks(answered, self._write_failed, errbackArgs=("claim",))

    def release(self, key: str) -> None:
        """Free this node's claim on ``key`` (fire and forget: a release lost to an
        outage is redone by the resync when the link is back)."""
        if self._synced:
            self._eval(RELEASE, self.node, key).addErrback(self._write_failed, "release")

    # -- membership --------------------------------------------------------------
    def room_changed(self, room, added=(), removed=()) -> None:
        """``chatd.rooms.Rooms`` tells each membership change here (a
        ``Room`` record after the change)."""
        self.members_changed(room.key, room.name, len(room.members), added, removed)

    def members_changed(self, room_key: str, room_name: str, count: int, added=(),
                        removed=()) -> None:
        """This node's members of a room changed: ``added`` (nick key, nick) pairs,
        ``removed`` nick keys, ``count`` local members now."""
        if not self._synced:
            return
        added = list(added)
        if added and removed:  # a change of case only: the key stays
            removed = [k for k in removed if k not in {key for key, _ in added}]
        args = [self.node, room_key, room_name, count]
        for key, nick in added:
            args += [key, nick]
        if removed:
            args.append("--")
            args.extend(removed)
        self._eval(MEMBERS, *args).addErrback(self._write_failed, "membership")

    def _write_failed(self, failure, what: str) -> None:
        # Not swallowed: logged, and the next resync rewrites this node's state.
        self.log.warn("presence: a {what} update did not reach Redis: {error}",
                      what=what, error=failure.getErrorMessage())

    def who(self, room_key: str):
        """The nicks in a room on the other live nodes (this node's are the caller's)."""
        if not self._synced:
            return fail(unavailable())
        d = self._eval(WHO, self.node, room_key)
        return d.addCallbacks(lambda nicks: [_s(n) for n in nicks], self._read_failed)

    def rooms(self):
        """room key -> (name, members) on the other live nodes."""
        if not self._synced:
            return fail(unavailable())

        def listing(reply):
            out = {}
            for rows in reply:
                for rk, value in _pairs(rows):
                    count, _, name = _s(value).partition(SEP)
                    rk = _s(rk)
                    prior = out.get(rk, (name, 0))[1]
                    out[rk] = (name, prior + int(count))
            return out
        return self._eval(ROOMS, self.node).addCallbacks(listing, self._read_failed)

    def _read_failed(self, failure):
        if failure.check(ChatError):
            return failure
        self.log.warn("presence: reading the cluster failed: {error}",
                      error=failure.getErrorMessage())
        raise unavailable()

    # -- heartbeat, dead nodes, resync -------------------------------------------
    def beat(self):
        """Refresh this node and reap the dead ones (one script, then one per dead node)."""
        if not self._synced:
            # Not in the cluster yet: the link is down (its on_up resyncs) or the
            # last resync failed (tried again here).
            return self.resync() if self.link.up else None
        d = self._eval(BEAT, self.node, self.alive_ms)
        d.addCallback(self._beaten)
        d.addErrback(lambda f: self.log.warn("presence: heartbeat failed: {error}",
                                             error=f.getErrorMessage()))
        return d

    def _beaten(self, reply) -> None:
        for node in reply:
            self.reap(_s(node))

    def reap(self, node: str):
        d = self._eval(REAP, node)

        def reaped(reply):
            if not reply:
                return  # alive again, or another node got there first
            by_nick = {}
            for i in range(0, len(reply), 2):
                by_nick.setdefault(_s(reply[i + 1]), []).append(_s(reply[i]))
            self.log.warn("presence: node {node} stopped answering; {count} of its users "
                          "shown as quit", node=node, count=len(by_nick))
            for nick, keys in by_nick.items():
                self._lost(nick, keys)
        d.addCallback(reaped)
        d.addErrback(lambda f: self.log.failure("presence: reaping {node} failed", f,
                                                node=node))
        return d

    def resync(self):
        """Write this node's whole state again (after start, and when the link is back)."""
        if self._resyncing:
            return None
        self._resyncing = True
        nicks, rooms = self._local()
        args = [self.node, self.alive_ms]
        for key, nick in nicks.items():
            args += [key, nick]
        d = self._eval(RESYNC, *args)

        def synced(reply):
            lost, reaped = reply
            self._synced = True
            self.log.info("presence: node {node} in the cluster with {nicks} nicks in "
                          "{rooms} rooms{reaped}", node=self.node, nicks=len(nicks),
                          rooms=len(rooms), reaped=" (the others had given it up as dead)"
                          if int(reaped) and self._was_synced else "")
            self._was_synced_before, self._was_synced = self._was_synced, True
            for key in lost:
                key = _s(key)
                self.log.warn("presence: nick {key} was claimed by another node while "
                              "Redis was away; its holder here is renamed", key=key)
                self._conflict(key)
            # State as it is now: a nick dropped, or a room joined, while the
            # script was on its way was not written (nothing is, until synced).
            now_nicks, now_rooms = self._local()
            for key in nicks.keys() - now_nicks.keys():
                self.release(key)
            for key in now_nicks.keys() - nicks.keys():
                self.assert_claim(key, now_nicks[key])
            for rk, (name, members) in now_rooms.items():
                self.members_changed(rk, name, len(members), members.items())
            if int(reaped) and self._was_synced_before and self._back is not None:
                self._back()
            return self.beat()

        def over(result):
            self._resyncing = False
            return result
        d.addBoth(over)
        d.addCallback(synced)
        d.addErrback(lambda f: self.log.warn("presence: resync failed: {error}",
                                             error=f.getErrorMessage()))
        return d


def _pairs(reply):
    """A flat HGETALL reply (or a dict, as some clients give) as (field, value) pairs."""
    if isinstance(reply, dict):
        return list(reply.items())
    reply = list(reply or ())
    return list(zip(reply[0::2], reply[1::2], strict=True))
