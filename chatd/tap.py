"""``twistd chatd``: options and the service tree they build."""

import getopt
import ipaddress
import os
import sys
from dataclasses import fields

import txaio
from twisted.application import service
from twisted.logger import Logger
from twisted.python import usage

from chatd import config as config_file
from chatd.admin import make_admin_site
from chatd.adminapi import make_api
from chatd.admission import Admission, AdmissionFactory, http_refusal, line_refusal
from chatd.cluster import ClusterParts
from chatd.dispatch import Dispatcher
from chatd.drain import Drain
from chatd.errors import ChatError
from chatd.fastsend import TurnFlusher
from chatd.gctune import CollectorTuning
from chatd.limits import Limits
from chatd.loglevel import LEVELS, LevelFilter, LevelledTop
from chatd.logs import FORMATS as LOG_FORMATS
from chatd.metrics import LagProbe, Metrics
from chatd.origin import normalise as normalise_origin
from chatd.pacing import Pacer
from chatd.passwords import Argon2Params, Passwords
from chatd.protocols.irc import IrcFactory, irc_refusal
from chatd.protocols.ircws import IrcWebSocketFactory
from chatd.protocols.line import LineFactory
from chatd.protocols.websocket import ChatWebSocketFactory
from chatd.proxyproto import split as split_proxied
from chatd.redislink import DEFAULT_PREFIX
from chatd.redislink import parse_url as parse_redis_url
from chatd.reload import Reloader
from chatd.rlimit import raise_nofile
from chatd.sdnotify import SystemdNotifier
from chatd.sdnotify import ready as notify_ready
from chatd.service import ChatService
from chatd.signals import StopOnTerm
from chatd.store import MAX_PAGE, open_store
from chatd.store.sqlite import SYNC_MODES
from chatd.tls import (
    CertificateError,
    ReloadableTLS,
    ReloadOnHangup,
    is_tls,
    listener,
    load_options,
)
from chatd.validate import check_nick
from chatd.web import Readiness, make_site

DEFAULT_LINE = "tcp:9000"
DEFAULT_WS = "tcp:8080"
# Connections the --admin endpoint holds at once, in all and from one address.
ADMIN_CONNECTIONS = 64
ADMIN_PER_IP = 16
DEFAULT_DATA_DIR = "./chatd-data"

_LIMIT_HELP = {
    "max_line": "longest input line in bytes (line protocol)",
    "max_frame": "largest WebSocket message in bytes",
    "max_message": "longest chat message in characters",
    "max_nick": "longest nick",
    "max_room": "longest room name, '#' included",
    "max_rooms_per_session": "rooms one session may be in",
    "rate": "requests per second a session may sustain",
    "burst": "requests a session may send in one burst",
    "flood_strikes": "refused requests in a row before a flooder is disconnected",
    "nick_interval": "seconds between nick changes",
    "max_connections": "connections in total",
    "max_per_ip": "connections from one address",
    "send_queue": "bytes of unsent output before a client that does not read is dropped",
    "ping_interval": "seconds of silence before a session is pinged",
    "ping_timeout": "seconds of silence before a session is dropped",
    "register_timeout": "seconds a connection may stay without a nick",
    "offline_queue": "private messages kept for one offline account; past it: recipient_busy",
    "max_kept_rooms": "rooms one account may keep (/keep): stored with their topic, "
                      "operators, bans and modes",
    "new_rooms_per_minute": "rooms one address (IPv6: its --ipv6-prefix) may create per minute",
    "connects_per_minute": "new connections one address (IPv6: its --ipv6-prefix) may open "
                           "per minute, on every listener",
    "login_fails_per_conn": "failed logins one connection may make per --login-window",
    "login_fails_per_addr": "failed logins one address (IPv6: its /64) may make per "
                               "--login-window",
    "login_window": "seconds for a spent login allowance to come back (it leaks back evenly)",
    "login_delay": "most seconds added to every login to an account being guessed from "
                   "many addresses (never a lockout)",
    "register_per_addr": "registrations one address (IPv6: its /64) may make per "
                         "--register-window",
    "register_window": "seconds for a spent registration allowance to come back",
    "register_per_minute": "registrations per minute from everyone together",
    "throttle_entries": "keys each login/registration throttle table remembers "
                        "(about 230 bytes each)",
    "hash_threads": "password hashes at once; their memory is this times "
                    "--argon2-memory-cost",
    "hash_queue": "password checks that may wait for a hashing thread; past it: 'busy'",
    "resume_ttl": "seconds a resume token (a reconnect's login without the password) "
                  "stays good",
    "request_timeout": "seconds from accept for a whole HTTP request head or TLS handshake "
                       "(slowloris)",
    "ipv6_prefix": "IPv6 prefix length counted as one address by --max-per-ip",
    "reconnect_burst": "requests a new connection may make at once on top of --burst, once: "
                       "enough to log in and rejoin --max-rooms-per-session rooms; 0: none",
    "coalesce_window": "seconds during which joins and parts after the first are gathered "
                       "into one notice per room; 0: every join and part announced alone",
    "large_room": "members from which a room's joins and parts are not announced and a "
                  "joiner gets the member count, not the list; 0: no limit",
}

_ARGON2 = Argon2Params()
# The windows' ceiling.  Broadcasts held for a window are not counted against a
# client's cap (chatd.outbuf: only replies are), so what a queue can hold is what
# the server reads while it waits; 20 ms keeps that of the order of one long
# reactor turn in a burst, which the queues hold without a window already.
MAX_WINDOW = 0.02


def _limit_params():
    defaults = Limits()
    for f in fields(Limits):
        yield [f.name.replace("_", "-"), None, getattr(defaults, f.name),
               _LIMIT_HELP[f.name], float if f.type is float else int]


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("chatd: one chat service behind a TCP line protocol (telnet, nc, "
                "NDJSON scripts) and a WebSocket endpoint at /ws with a web client at /.")
    optParameters = [
        ["name", None, "chatd", "server name shown to clients"],
        ["config", None, None,
         "TOML file of settings, keyed by these options' names (etc/chatd.toml); the "
         "command line wins; SIGHUP re-reads it"],
        ["motd", None, None,
         "text file shown to every client on connect, at most 4 KiB; SIGHUP re-reads it"],
        ["log-level", None, "info", "least severe log events kept: debug, info, warn or error"],
        ["tls-cert", None, None,
         "PEM certificate chain, leaf first (fullchain.pem) for tls: listeners; SIGHUP reloads it"],
        ["tls-key", None, None, "PEM private key (privkey.pem) for tls: listeners"],
        ["data-dir", None, None,
         "directory of the SQLite database (history, accounts, rooms), created if missing "
         f"(default {DEFAULT_DATA_DIR})"],
        ["db", None, None,
         "postgresql://USER@HOST/DBNAME: keep everything in PostgreSQL instead of SQLite"],
        ["history", None, 50, "messages of scrollback sent to whoever joins a room", int],
        ["redis", None, None,
         "redis://HOST:PORT/DB: join the other nodes sharing this Redis (and --db) as one "
         "chat (default: this node alone)"],
        ["redis-prefix", None, DEFAULT_PREFIX,
         "with --redis: prefix of every Redis key and channel; one per cluster sharing a Redis"],
        ["node-id", None, None,
         "with --redis: this node's name in the cluster, unique (default: hostname-pid)"],
        ["node-timeout", None, 10.0,
         "with --redis: seconds within which a node that stops answering (kill -9, cut "
         "off) loses its nicks and its users are shown quitting on the others; heartbeats "
         "come every third of it", float],
        ["store-timeout", None, 10.0,
         "seconds any database operation may take; past it: store_unavailable, /healthz "
         "degraded, and recovery without a restart", float],
        ["sqlite-sync", None, "full",
         "full: acknowledge a message once fsynced (survives power loss); normal: once "
         "written (survives kill -9, not power loss; less CPU and latency)"],
        ["commit-window", None, 0.0,
         "seconds a message may wait for the next ones so that they share one commit (and "
         "fsync; a message after a quiet spell never waits); 0: each commits as soon as "
         "the one before has. Less CPU under steady traffic; acks and deliveries wait at "
         "most this much longer (at most 0.02)", float],
        ["send-window", None, 0.0,
         "seconds a send to a client may wait for the next messages so that they share one "
         "send (a lone message never waits); 0: every turn's writes go out at its end. "
         "Less CPU per delivery under steady traffic, at most this much more latency "
         "(at most 0.02)", float],
        # New password hashes only; older hashes keep (and verify with) their own.
        ["argon2-time-cost", None, _ARGON2.time_cost,
         "argon2id passes for new password hashes; time grows linearly (default: "
         "90 ms of one core per hash on a 2-core development machine)", int],
        ["argon2-memory-cost", None, _ARGON2.memory_cost,
         "argon2id KiB per password hash (default 64 MiB)", int],
        ["argon2-parallelism", None, _ARGON2.parallelism,
         "argon2id lanes: cores one password hash may use", int],
        ["log-format", None, "text",
         "text: twistd's readable lines; json: one JSON object per line with its fields"],
        ["admin-token-file", None, None,
         "file holding the bearer token of the admin HTTP API (/api/), read at start"],
    ] + list(_limit_params())

    def __init__(self):
        super().__init__()
        self["line"] = []
        self["ws"] = []
        self["irc"] = []
        self["trusted-proxy"] = []
        self["allowed-origin"] = []
        self["admin"] = []
        self["operators"] = []
        self.argv = []  # the command line, kept so a reload parses it again
        self.given = set()  # options named on the command line: the file does not override them

    def parseOptions(self, options=None):
        if options is None:
            options = sys.argv[1:]
        self.argv = list(options)
        try:
            named, _ = getopt.getopt(self.argv, self.shortOpt, self.longOpt)
        except getopt.error:
            named = []  # the real parse below reports it
        for opt, _value in named:
            opt = opt.lstrip("-")
            self.given.add(self.synonyms.get(opt) or self.synonyms.get(opt.replace("-", "_"), opt))
        super().parseOptions(self.argv)

    def reread(self) -> "Options":
        """The same command line parsed again, so the files it names are read again."""
        again = type(self)()
        again.parseOptions(self.argv)
        return again

    def opt_line(self, endpoint):
        """Line protocol endpoint, repeatable (default tcp:9000; none: off; tls:PORT: TLS;
        haproxy:ENDPOINT: behind a --trusted-proxy sending a PROXY header)"""
        self["line"].append(endpoint)

    def opt_ws(self, endpoint):
        """HTTP/WebSocket endpoint, repeatable (default tcp:8080; none: off; tls:PORT: wss)"""
        self["ws"].append(endpoint)

    def opt_irc(self, endpoint):
        """IRC endpoint (RFC 1459/2812, IRCv3), repeatable (default none; tcp:6667; tls:6697;
        haproxy:ENDPOINT as for --line)"""
        self["irc"].append(endpoint)

    def opt_admin(self, endpoint):
        """Operators' HTTP endpoint: /metrics, /healthz, /readyz; repeatable (default
        none; e.g. tcp:9100:interface=127.0.0.1)"""
        self["admin"].append(endpoint)

    def opt_trusted_proxy(self, address):
        """Proxy whose X-Forwarded-For (WebSocket) or PROXY header (haproxy: listeners)
        names clients, repeatable (e.g. 127.0.0.1)"""
        try:
            self["trusted-proxy"].append(str(ipaddress.ip_address(address)))
        except ValueError:
            raise usage.UsageError(f"--trusted-proxy: {address!r} is not an IP address")

    def opt_allowed_origin(self, origin):
        """Web page origin allowed to open /ws besides this server's own, repeatable"""
        if normalise_origin(origin) is None:
            raise usage.UsageError(f"--allowed-origin: {origin!r} is not like "
                                   "https://chat.example.org")
        self["allowed-origin"].append(origin)

    def opt_operators(self, names):
        """Account names of the server operators, comma-separated, repeatable"""
        for name in filter(None, (n.strip() for n in names.split(","))):
            try:
                check_nick(name, max_nick=64)
            except ChatError as e:
                raise usage.UsageError(f"--operators: {name!r}: {e.message}")
            self["operators"].append(name)

    def postOptions(self):
        taken = set()
        if self["config"] is not None:
            taken = config_file.apply(self, self["config"], self.given)
        try:
            self._check()
        except usage.UsageError as e:
            raise config_file.blame(e, self["config"], taken) from None

    def _check(self):
        if self["log-level"] not in LEVELS:
            raise usage.UsageError(f"--log-level is one of {', '.join(LEVELS)}")
        self["motd-lines"] = () if self["motd"] is None else config_file.read_motd(self["motd"])
        if not self["line"]:
            self["line"] = [DEFAULT_LINE]
        if not self["ws"]:
            self["ws"] = [DEFAULT_WS]
        self["line"] = [e for e in self["line"] if e != "none"]
        self["ws"] = [e for e in self["ws"] if e != "none"]
        self["irc"] = [e for e in self["irc"] if e != "none"]
        self["admin"] = [e for e in self["admin"] if e != "none"]
        self._check_proxied()
        self._check_tls()
        if self["data-dir"] is None:
            self["data-dir"] = DEFAULT_DATA_DIR
        if not self["store-timeout"] > 0:
            raise usage.UsageError("--store-timeout must be positive")
        if self["redis"] is not None:
            try:
                parse_redis_url(self["redis"])
            except ValueError as e:
                raise usage.UsageError(f"--redis: {e}")
        if not self["redis-prefix"]:
            raise usage.UsageError("--redis-prefix may not be empty")
        if self["node-id"] is not None and (
                not self["node-id"] or any(c.isspace() for c in self["node-id"])):
            raise usage.UsageError("--node-id is a name without spaces")
        if not self["node-timeout"] >= 1.0:
            raise usage.UsageError("--node-timeout is at least 1 second")
        if not 0 <= self["history"] <= MAX_PAGE:
            raise usage.UsageError(f"--history is 0-{MAX_PAGE}")
        for window in ("send-window", "commit-window"):
            if not 0 <= self[window] <= MAX_WINDOW:
                raise usage.UsageError(f"--{window}: seconds from 0 to {MAX_WINDOW}, "
                                       f"not {self[window]}")
        if self["sqlite-sync"] not in SYNC_MODES:
            raise usage.UsageError(f"--sqlite-sync is one of {', '.join(SYNC_MODES)}")
        if self["db"] is not None and not self["db"].startswith(("postgresql://",
                                                                 "postgres://")):
            raise usage.UsageError("--db takes a postgresql:// URL")
        if self["log-format"] not in LOG_FORMATS:
            raise usage.UsageError(f"--log-format is one of {', '.join(LOG_FORMATS)}")
        self["admin-token"] = None
        if self["admin-token-file"] is not None:
            self["admin-token"] = _read_token(self["admin-token-file"])
        if not 1 <= self["ipv6-prefix"] <= 128:
            raise usage.UsageError("--ipv6-prefix is 1-128")
        try:
            self["argon2"] = Argon2Params(self["argon2-time-cost"], self["argon2-memory-cost"],
                                          self["argon2-parallelism"])
        except ValueError as e:
            raise usage.UsageError(str(e))
        try:
            self["limits"] = Limits(**{f.name: self[f.name.replace("_", "-")]
                                       for f in fields(Limits)})
        except ValueError as e:
            raise usage.UsageError(str(e))

    def _check_proxied(self):
        for kind in ("line", "ws", "irc", "admin"):
            for endpoint in self[kind]:
                try:
                    proxied, _ = split_proxied(endpoint)
                except ValueError as e:
                    raise usage.UsageError(f"--{kind}: {e}")
                if proxied and not self["trusted-proxy"]:
                    # Without it every header would be refused: say so now, not
                    # in a log line per connection.
                    raise usage.UsageError(
                        f"--{kind} {endpoint}: a haproxy: listener takes the client's address "
                        "from the PROXY header of the proxy in front; name that proxy's "
                        "address with --trusted-proxy")

    def _check_tls(self):
        wants_tls = any(is_tls(e) for e in self["line"] + self["ws"] + self["irc"]
                       + self["admin"])
        have = [self["tls-cert"] is not None, self["tls-key"] is not None]
        if any(have) and not all(have):
            raise usage.UsageError("--tls-cert and --tls-key go together")
        if wants_tls and not all(have):
            raise usage.UsageError("a tls: endpoint needs --tls-cert and --tls-key")
        if all(have):
            try:
                load_options(self["tls-cert"], self["tls-key"])
            except CertificateError as e:
                raise usage.UsageError(str(e))


def _read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeError) as e:
        raise usage.UsageError(f"--admin-token-file: cannot read {path}: {e}")
    if len(token) < 16:
        raise usage.UsageError("--admin-token-file: the token must be at least 16 characters")
    return token


def makeService(config, reactor=None) -> service.MultiService:
    if reactor is None:
        from twisted.internet import reactor
    # twistd's observer records every level; Autobahn's per-frame debug lines
    # would flood the log (and cost CPU on the hot path).
    txaio.use_twisted()
    txaio.set_global_log_level("info")
    raise_nofile(config["limits"].max_connections)
    # twistd's own options, when run by twistd: where its log goes, in which format
    # (chatd.loglevel, chatd.logs), behind the level filter a reload can change.
    levels = LevelFilter(config["log-level"])
    top = LevelledTop(levels, getattr(config, "parent", None), config["log-format"])
    store = open_store(config["db"], config["data-dir"], reactor=reactor,
                       sqlite_sync=config["sqlite-sync"], timeout=config["store-timeout"])
    limits = config["limits"]
    # One registry per daemon (chatd.metrics), handed to each owner that counts.
    metrics = Metrics(reactor)
    store.metrics = metrics
    store.commit_window = config["commit-window"]
    passwords = Passwords(reactor, config["argon2"], threads=limits.hash_threads,
                          max_waiting=limits.hash_queue)
    clustered = {}
    link = cluster = None
    if config["redis"] is not None:
        # Several nodes as one chat (chatd.cluster): the chat service runs
        # inside the Redis link's lifetime (the last quits go out through it).
        cluster = ClusterParts(reactor, config["redis"], config["redis-prefix"],
                               config["node-id"], config["node-timeout"], metrics)
        link = cluster.link
        clustered = {"presence": cluster.presence, "make_bus": cluster.make_bus}
    chat = ChatService(limits, clock=reactor, server_name=config["name"],
                       store=store, history=config["history"], passwords=passwords,
                       motd=config["motd-lines"], operators=config["operators"],
                       metrics=metrics, **clustered)
    # Added first so it stops last: listeners close, then clients are told,
    # then the store finishes its writes.
    chat.setServiceParent(top if cluster is None else cluster.holder(top))
    listeners = AfterStore(chat, reactor)
    readiness = Readiness(store, listeners, link)
    LagProbe(metrics, reactor).setServiceParent(top)
    # In a reconnect storm, newcomers' work waits its turn (chatd/pacing.py).
    dispatcher = Dispatcher(chat, pacer=Pacer(reactor, metrics=metrics))
    # Added after the chat service, so stopped before it: a storm's last counts
    # of refused requests are logged, not lost with the process.
    WhenStopping(dispatcher.stop).setServiceParent(top)
    tls = None
    if config["tls-cert"] is not None:
        tls = ReloadableTLS(config["tls-cert"], config["tls-key"])
    # One count for every listener: a connection is counted from accept (see
    # chatd/admission.py), whatever it speaks and however far it gets.
    admission = Admission.from_limits(config["limits"], exempt=config["trusted-proxy"],
                                      clock=reactor)
    admission.metrics = metrics
    # Always: SIGHUP's default action would kill the daemon on `systemctl reload`.
    # A reload re-reads the configuration file, the MOTD and the certificate.
    reloader = Reloader(config, chat, admission, tls, levels)
    ReloadOnHangup(tls, reactor, reloader.reload).setServiceParent(top)
    StopOnTerm(reactor).setServiceParent(top)
    # One end-of-turn sender shared by every front end (chatd.fastsend).
    flusher = TurnFlusher(reactor, window=config["send-window"])

    def admit(refusal, front_end):
        return lambda factory: AdmissionFactory(factory, admission, refusal, reactor,
                                                front_end)
    # Who may name a client with a PROXY header on a haproxy: listener.
    trusted = config["trusted-proxy"]
    line_factory = LineFactory(chat, dispatcher, flusher)
    for endpoint in config["line"]:
        listener(endpoint, line_factory, reactor, tls,
                 admit(line_refusal, "line"), trusted).setServiceParent(listeners)
    if config["irc"]:
        irc_factory = IrcFactory(chat, dispatcher, flusher)
        for endpoint in config["irc"]:
            listener(endpoint, irc_factory, reactor, tls,
                     admit(irc_refusal, "irc"), trusted).setServiceParent(listeners)
    if config["ws"]:
        ws_options = dict(trusted_proxies=config["trusted-proxy"], admission=admission,
                          allowed_origins=config["allowed-origin"], flusher=flusher)
        ws_factory = ChatWebSocketFactory(chat, dispatcher, **ws_options)
        # IRC over WebSocket at /irc: the same port, limits and origin rules.
        irc_ws_factory = IrcWebSocketFactory(chat, dispatcher, **ws_options)
        site = make_site(chat, ws_factory, admission, config["limits"].request_timeout,
                         reactor, metrics, readiness, irc_ws_factory)
        for endpoint in config["ws"]:
            listener(endpoint, site, reactor, tls,
                     admit(http_refusal, "websocket"), trusted).setServiceParent(listeners)
    # Open from the start, not after the store: /readyz then says why it is not
    # ready yet.  Not counted by admission: a scrape never takes a user's place.
    # The admin JSON API (chatd.adminapi) only with a token to check.
    extra = {}
    if config["admin-token"] is not None:
        extra[b"api"] = make_api(chat, config["admin-token"], Drain(chat, listeners, reactor))
    admin_site = make_admin_site(chat, metrics, readiness, admission, extra=extra,
                                 request_timeout=limits.request_timeout, reactor=reactor)
    # Counted on its own (a scrape never takes a user's place), but counted: an
    # admin port someone else can reach must not take every descriptor.
    admin_admission = Admission(ADMIN_CONNECTIONS, ADMIN_PER_IP, limits.ipv6_prefix)
    for endpoint in config["admin"]:
        listener(endpoint, admin_site, reactor, tls,
                 lambda factory: AdmissionFactory(factory, admin_admission, http_refusal,
                                                  reactor), trusted).setServiceParent(top)
    # The last step of start-up, once every listener is open (chatd.gctune).
    CollectorTuning().setServiceParent(listeners)
    listeners.setServiceParent(top)
    # Last, so it stops first: systemd hears STOPPING=1 before the listeners close.
    SystemdNotifier(reactor).setServiceParent(top)
    return top


class WhenStopping(service.Service):
    """Calls ``stop`` (no arguments) when the daemon stops."""

    def __init__(self, stop):
        self.stop = stop

    def stopService(self):
        super().stopService()
        self.stop()


class AfterStore(service.MultiService):
    """The listeners, opened only once the store is open and migrated.

    A client never meets a half-started server.  If the store cannot be
    opened the daemon logs why and exits.  (The ports are bound after
    start-up, not in twistd's privileged phase: for ports below 1024 use
    systemd socket activation or CAP_NET_BIND_SERVICE.)
    """

    log = Logger()
    opened = False  # every listener is open (read by /readyz)

    def __init__(self, chat, reactor, ready=notify_ready):
        super().__init__()
        self.chat = chat
        self.reactor = reactor
        self.ready = ready  # called once every listener listens (systemd READY=1)

    def privilegedStartService(self):
        service.Service.privilegedStartService(self)

    def startService(self):
        service.Service.startService(self)
        self.chat.load().addCallbacks(self._open, self._failed)

    def _open(self, _):
        if not self.running:
            return
        for child in self:
            try:
                child.privilegedStartService()
                child.startService()
            except Exception:
                # A port in use: a daemon missing one of its listeners would
                # look healthy while refusing half its users.  Say so and exit.
                self.log.failure("cannot open a listener ({listener}); exiting",
                                 listener=child)
                self._exit()
                return
        # Every endpoint here listens synchronously (tcp, unix, systemd, tls over
        # them), so the ports accept connections by now.
        self.ready()
        self.opened = True

    def stopService(self):
        self.opened = False  # draining: no new clients
        return super().stopService()

    def _failed(self, failure):
        self.log.failure("cannot open the store {store}; exiting", failure,
                         store=self.chat.store.description)
        self._exit()

    def _exit(self):
        # Exit non-zero (after twistd's own shutdown) so a supervisor sees the failure
        # and retries, e.g. systemd's Restart=on-failure while PostgreSQL comes up.
        self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        self.reactor.stop()
