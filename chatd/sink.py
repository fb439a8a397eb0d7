"""The part every front end shares: a connection as the service's ``IClientSink``.

A front end's protocol class mixes in ``SinkBase`` and provides only what is
its own: its wire format, how it parses input, how it pings, and how it
closes its transport (``close_transport``).  Everything else is here, once:

* the bounded output queue (chatd.outbuf) that every byte goes through;
* admission: ``open_session`` asks the service, and a refusal is written in
  the front end's format before the connection closes;
* closing: the "bye" goes out before the close, the output queue stops being
  the transport's producer (a TLS transport waits for that before it shuts
  down), and a peer that does not let the connection close within
  ``CLOSE_TIMEOUT`` seconds is cut off;
* overflow: the queue tells us, we abort the transport, and the reason reaches
  the service once, through the normal disconnect;
* a TLS handshake that has not completed within ``--request-timeout`` seconds
  is cut off (the HTTP side bounds its request head with the same option).
"""

from twisted.internet.interfaces import IHandshakeListener, ISSLTransport
from twisted.logger import Logger
from zope.interface import implementer

from chatd.errors import ChatError
from chatd.events import Bye, Error
from chatd.interfaces import IClientSink
from chatd.metrics import NO_METRICS
from chatd.outbuf import OutputQueue

CLOSE_TIMEOUT = 5.0


# Module level, not ``self.log``: Autobahn's protocol has a ``log`` of its own
# (a txaio logger whose level keeps its per-frame debug lines quiet).
log = Logger()


@implementer(IClientSink, IHandshakeListener)
class SinkBase:
    service = None  # the ChatService; set by the protocol's constructor or factory
    session = None
    out = None
    _why_gone = None  # the reason we cut the connection ourselves, if we did
    _close_timer = None
    _handshake_timer = None

    # -- set-up -------------------------------------------------------------------
    def start_output(self, transport, flusher=None) -> None:
        set_nodelay = getattr(transport, "setTcpNoDelay", None)
        if set_nodelay is not None:
            # Chat lines are small and latency matters more than packet count
            # (every front end: Autobahn asks for it too).
            set_nodelay(True)
        service = self.service
        self.out = OutputQueue(transport, service.limits.send_queue, self._overflowed,
                               service.clock, flusher)
        self.write = self.out.write

    def watch_handshake(self) -> None:
        """Cut off a TLS peer that never completes its handshake."""
        if ISSLTransport.providedBy(self.transport):
            self._handshake_timer = self.service.clock.callLater(
                self.service.limits.request_timeout, self._handshake_expired)

    def handshakeCompleted(self) -> None:
        self._cancel("_handshake_timer")

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        self._why_gone = "TLS handshake timeout"
        self.abort()

    def open_session(self, host: str) -> bool:
        """Ask the service to admit this connection; on refusal say why and close."""
        try:
            self.session = self.service.connect(self, host)
        except ChatError as e:
            self.refuse(e)
            return False
        return True

    def refuse(self, error: ChatError) -> None:
        """Say why this connection is not admitted, and close it."""
        self.out.write(self.wire_format(Error(error.code, error.message)))
        self._why_gone = error.message
        self._finish(error.message)

    # -- IClientSink ---------------------------------------------------------------
    def write(self, payload: bytes) -> None:  # replaced by the queue's own write
        self.out.write(payload)

    def write_reply(self, payload: bytes) -> None:
        self.out.write_counted(payload)

    def close_session(self, reason: str) -> None:
        if self.out is None or self.out.closed:
            self.abort()
            return
        self.out.write(self.wire_format(Bye(reason)))
        self._finish(reason)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def switch_format(self, name: str) -> None:
        raise ChatError("unknown_type", f'unknown request type "{name}"')

    # -- closing ---------------------------------------------------------------------
    def _finish(self, reason: str) -> None:
        """Send what is queued, then close; cut the connection if that does not happen."""
        self.before_close(reason)
        self.out.seal()  # nothing more after the bye (and a WebSocket's close frame)
        if self._close_timer is None:
            self._close_timer = self.service.clock.callLater(CLOSE_TIMEOUT, self.abort)
        self.close_transport()

    def before_close(self, reason: str) -> None:
        """The front end's last words through the queue (a WebSocket's close frame)."""

    def close_transport(self) -> None:
        """Close the transport once everything is handed to it."""
        # A TLS transport shuts down only once no producer is registered.
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def _overflowed(self) -> None:
        log.warn("dropping {session}: send queue exceeded", session=self.session)
        self._why_gone = "send queue exceeded"
        getattr(self.service, "metrics", NO_METRICS).send_queue_overflow()
        self.abort()

    def connection_gone(self, reason: str = "connection closed") -> None:
        """Call from the protocol's connectionLost: tell the service, once, and let go."""
        self._cancel("_close_timer")
        self._cancel("_handshake_timer")
        if self.out is not None:
            self.out.release()
        session, self.session = self.session, None
        if session is not None:
            self.service.disconnected(session, self._why_gone or reason)

    def _cancel(self, name: str) -> None:
        timer = getattr(self, name)
        if timer is not None:
            setattr(self, name, None)
            if timer.active():
                timer.cancel()
