"""The seams between the chat service and the front ends."""

from zope.interface import Attribute, Interface


class IClientSink(Interface):
    """What the service needs from a connection, whatever its transport.

    ``chatd.sink.SinkBase`` implements all of it for a front end on a Twisted
    transport; the service calls nothing else on a connection.
    """

    wire_format = Attribute("function event -> payload that ``write`` accepts")

    def write(payload):
        """Queue an encoded payload for sending; never blocks, never raises."""

    def write_reply(payload):
        """``write`` for what one session alone is sent (answers, history): counted
        against its send-queue cap even before the end of the reactor turn."""

    def send_ping():
        """Ask the peer for a sign of life (a ping line or a WebSocket ping frame)."""

    def close_session(reason):
        """Tell the peer why, then close the connection (cleanly where possible,
        and for certain within a bounded time)."""

    def abort():
        """Close the connection now, discarding whatever is unsent."""

    def switch_format(name):
        """Speak another wire format from now on (``"json"``: the line protocol's
        JSON mode), or raise a ChatError where the front end has no such format."""
