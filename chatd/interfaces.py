"""The seams between the chat service and the front ends."""

from zope.interface import Attribute, Interface


class IClientSink(Interface):
    """What the service needs from a connection, whatever its transport."""

    wire_format = Attribute("function event -> payload that ``write`` accepts")

    def write(payload):
        """Queue an encoded payload for sending; never blocks, never raises."""

    def send_ping():
        """Ask the peer for a sign of life (a ping line or a WebSocket ping frame)."""

    def close_session(reason):
        """Tell the peer why, then close the connection (cleanly where possible)."""
