"""Server-side TLS whose certificate can be replaced on SIGHUP without a restart.

``tls:PORT[:interface=ADDR]`` (or ``tls:`` in front of any other server
endpoint description, e.g. ``tls:systemd:domain=INET:index=0``) wraps that
listener in TLS using the ``--tls-cert``/``--tls-key`` files.  Every listener
shares one :class:`ReloadableTLS`; a reload builds a new context from the files
and only swaps it in once it loaded cleanly, so a bad renewal keeps the old
certificate serving.  Connections already open keep the context they started
with.  Twisted's own ``ssl:`` endpoints work too, but cannot be reloaded.

``haproxy:`` goes in front of either (``haproxy:tls:6697``,
``haproxy:tcp:9000``): the PROXY header comes first on the wire, before any TLS
handshake (chatd.proxyproto).
"""

import signal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.application import internet, service, strports
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from chatd import proxyproto, sdnotify

PREFIX = "tls:"
# Connections the kernel holds for accept() on a tcp/unix listener whose
# description names no backlog (Twisted's default is 50).  A reconnect storm
# after a restart brings thousands of connections a second; past the backlog
# the kernel drops them (docs/performance.rst).  net.core.somaxconn caps it.
DEFAULT_BACKLOG = 4096
MINIMUM_VERSION = TLSVersion.TLSv1_2
# Mozilla's "intermediate" profile without its DHE suites (we load no DH
# parameters): TLS 1.2 with forward-secret key exchange (ECDHE) and AEAD
# ciphers only -- no static-RSA key exchange, no CBC, no SHA-1 MACs.  TLS 1.3
# suites are all of that kind and OpenSSL configures them separately.
TLS12_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                 "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                 "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")


class CertificateError(Exception):
    """The certificate or key files cannot be used; the message says why."""


def load_options(cert_path: str, key_path: str) -> tuple[CertificateOptions, x509.Certificate]:
    """Read a PEM certificate chain (leaf first, as in fullchain.pem) and its key."""
    try:
        with open(cert_path, "rb") as f:
            chain = x509.load_pem_x509_certificates(f.read())
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise CertificateError(f"cannot read {cert_path} / {key_path}: {e}") from e
    leaf, *intermediates = chain
    options = CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(leaf),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in intermediates],
        raiseMinimumTo=MINIMUM_VERSION,
        acceptableCiphers=AcceptableCiphers.fromOpenSSLCipherString(TLS12_CIPHERS),
    )
    try:
        # Builds the context now, so a key that does not match fails here
        # rather than on the first handshake.
        options.getContext()
    except SSL.Error as e:
        raise CertificateError(f"{key_path} does not match {cert_path}: {e}") from e
    return options, leaf


def describe(cert: x509.Certificate) -> dict:
    return {"serial": format(cert.serial_number, "x"),
            "subject": cert.subject.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat()}


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """The one TLS context every ``tls:`` listener uses; ``reload()`` replaces it."""

    log = Logger()

    def __init__(self, cert_path: str, key_path: str):
        self.cert_path = cert_path
        self.key_path = key_path
        # Fails loudly at startup: a daemon that cannot serve TLS should not start.
        self._options, self.certificate = load_options(cert_path, key_path)
        self.log.info("TLS certificate {serial} for {subject} (expires {not_after})",
                      **describe(self.certificate))

    def serverConnectionForTLS(self, tlsProtocol):
        return SSL.Connection(self._options.getContext(), None)

    def reload(self, cert_path: str | None = None, key_path: str | None = None) -> bool:
        """Load the files again (or new ones); keep the old certificate if they are unusable."""
        cert_path = cert_path or self.cert_path
        key_path = key_path or self.key_path
        try:
            options, cert = load_options(cert_path, key_path)
        except CertificateError as e:
            self.log.error("TLS certificate reload failed, still serving {serial}: {error}",
                           serial=describe(self.certificate)["serial"], error=str(e))
            return False
        self._options, self.certificate = options, cert
        self.cert_path, self.key_path = cert_path, key_path
        self.log.info("TLS certificate reloaded: {serial} for {subject} (expires {not_after})",
                      **describe(cert))
        return True


def is_tls(description: str) -> bool:
    """Whether the listener speaks TLS, behind a ``haproxy:`` or not."""
    return proxyproto.split(description)[1].startswith(PREFIX)


def with_backlog(description: str) -> str:
    """A tcp/tcp6/unix description with ``backlog=DEFAULT_BACKLOG`` unless it names one."""
    kind = description.split(":", 1)[0]
    if kind in ("tcp", "tcp6", "unix") and "backlog=" not in description:
        return f"{description}:backlog={DEFAULT_BACKLOG}"
    return description


def listener(description: str, factory, reactor, tls: ReloadableTLS | None,
             admit=None, trusted_proxies=()) -> service.Service:
    """A listening service for an endpoint description, ours (``tls:``,
    ``haproxy:``) or Twisted's.

    ``admit`` wraps the outermost factory (outside TLS), so connection
    limits count a connection from accept, before any TLS handshake.  Behind
    ``haproxy:`` that outermost factory is built only once the PROXY header
    from one of ``trusted_proxies`` has named the client: admission counts the
    client, not the proxy.
    """
    admit = admit or (lambda f: f)
    proxied, inner = proxyproto.split(description)
    if proxied:
        if not trusted_proxies:
            raise ValueError(f"{description}: a haproxy: listener needs --trusted-proxy")
        description = inner
        admit = _behind_proxy(admit, trusted_proxies, reactor)
    if not is_tls(description):
        return strports.service(with_backlog(description), admit(factory), reactor=reactor)
    if tls is None:
        raise ValueError(f"{description}: a tls: listener needs --tls-cert and --tls-key")
    inner = description[len(PREFIX):]
    if inner[:1].isdigit():
        inner = "tcp:" + inner
    endpoint = serverFromString(reactor, with_backlog(inner))
    svc = internet.StreamServerEndpointService(
        endpoint, admit(TLSMemoryBIOFactory(tls, False, factory)))
    # As strports.service does: a port that cannot be bound raises at start-up
    # (and stops the daemon) instead of being logged and forgotten.
    svc._raiseSynchronously = True
    return svc


def _behind_proxy(admit, trusted_proxies, reactor):
    def wrap(factory):
        return proxyproto.ProxyHeaderFactory(admit(factory), trusted_proxies, reactor)
    return wrap


class ReloadOnHangup(service.Service):
    """SIGHUP reloads (``systemctl reload``, a certbot deploy hook).

    ``reload`` is what a reload does: ``chatd.reload.Reloader.reload`` reads
    the configuration file again and reloads the certificate too; without it,
    only the certificate is reloaded.  Any SIGHUP handler installed before ours
    still runs, so other parts of the daemon can listen for the same signal.
    """

    log = Logger()

    def __init__(self, tls: ReloadableTLS | None, reactor, reload=None):
        self.tls = tls
        self.reactor = reactor
        self.reload = reload or self._reload_certificate
        self._previous = None

    def startService(self):
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._hangup)

    def stopService(self):
        super().stopService()
        signal.signal(signal.SIGHUP, self._previous or signal.SIG_DFL)

    def _hangup(self, signum, frame):
        # A signal handler may interrupt the reactor anywhere: do the work in
        # the reactor's own time.
        # systemd sees RELOADING=1 until the reload is done (chatd.sdnotify).
        self.reactor.callFromThread(sdnotify.reloading, self._reload)
        if callable(self._previous):
            self._previous(signum, frame)

    def _reload(self):
        try:
            self.reload()
        except Exception:
            # The daemon keeps running on its old settings whatever went wrong.
            self.log.failure("SIGHUP: reload failed")

    def _reload_certificate(self):
        if self.tls is None:
            self.log.info("SIGHUP: no TLS certificate to reload")
            return
        self.log.info("SIGHUP: reloading the TLS certificate from {cert}",
                      cert=self.tls.cert_path)
        self.tls.reload()
