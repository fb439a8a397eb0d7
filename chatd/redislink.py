"""The link to Redis: one command connection and one pub/sub connection.

Interface (CL-B and CL-C build on it; keep it, or update this doc string):

* ``RedisLink(reactor, url, prefix, node_id, timeout=5.0)``: a twisted
  ``Service``.  Started, it connects both connections; it is ``up`` once both
  are connected, the database selected and every remembered subscription
  restored.
* ``up`` (bool): read it before anything that needs the cluster.
* ``key(*parts)`` -> ``str``: ``prefix + ":".join(parts)`` (the prefix ends
  with its own separator, ``chatd:`` by default).
* ``command(name, *args)`` -> Deferred firing the decoded reply (bytes, int,
  list, None); a Redis error reply fails it with ``RedisError``.  While the
  link is down it fails at once with ``RedisUnavailable``; a reply slower than
  ``timeout`` fails it with ``RedisUnavailable`` and the connection is cut and
  reconnected (replies are matched by order, so a late one cannot be trusted).
* ``publish(channel, data: bytes)`` -> Deferred (the number of receivers).
  ``channel`` is a name under the prefix: the link adds the prefix.
* ``subscribe(channel, callback)`` / ``unsubscribe(channel)``: ``callback(data:
  bytes)`` for each message on the channel (prefix added by the link).
  Remembered, and restored after a reconnect.
* ``add_listener(on_up=None, on_down=None)``: called with no argument each
  time the link comes up (after the subscriptions are restored: resync here)
  and each time it goes down.
"""
