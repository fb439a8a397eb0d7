"""What a node joins a cluster with (``--redis``): the Redis link, the bus
built around the local one, and cluster presence.  Without ``--redis`` none
of it exists and the daemon is the single node it always was."""

from twisted.application.service import MultiService

from chatd.presence import ClusterPresence
from chatd.redisbus import RedisBus
from chatd.redislink import RedisLink


class ClusterParts:
    """``link``, ``presence`` and ``make_bus`` for ``ChatService(presence=...,
    make_bus=...)``; ``holder(parent)``: the service to put the chat service in,
    so the link starts before it and closes only once it has stopped."""

    def __init__(self, reactor, url: str, prefix: str, node_id: str, node_timeout: float,
                 metrics):
        self.link = RedisLink(reactor, url, prefix, node_id, metrics=metrics)
        self.presence = ClusterPresence(self.link, self.link.node_id, reactor,
                                        node_timeout=node_timeout)
        self.metrics = metrics
        self.bus = None

    def make_bus(self, service, local) -> RedisBus:
        store = service.store
        self.bus = RedisBus(self.link, local, service.rooms, service.nicks, service.sessions,
                            metrics=self.metrics,
                            recover=lambda key, since: store.history(key, since=since,
                                                                     limit=500),
                            last_mid=lambda: service.last_mid, note_mid=service.saw_mid)
        return self.bus

    def holder(self, parent) -> "LinkedServices":
        holder = LinkedServices(self.link)
        holder.setServiceParent(parent)
        return holder


class LinkedServices(MultiService):
    """Its children (the chat service) run inside the Redis link's lifetime:
    the link opens first, and closes after they have stopped (their last quits,
    releases and messages go out through it)."""

    def __init__(self, link):
        super().__init__()
        self.link = link

    def startService(self):
        self.link.startService()
        super().startService()

    def stopService(self):
        d = super().stopService()
        d.addBoth(lambda _: self.link.stopService())
        return d
