"""The clustered bus: ``IBus`` (chatd.bus) in front of the local one, joined
to the other nodes through Redis pub/sub (chatd.redislink).

Each event is delivered locally at once, and published ONCE on one channel
(never once per recipient): ``room:<key>`` for a room, ``user:<nick key>`` for
a person, ``rooms`` for a nick change or a quit seen by several rooms,
``all`` for everyone.  A node subscribes only to the channels of rooms it has
local members in and of nicks held locally.  A message carries the sending
node's id; a node ignores its own.
"""
