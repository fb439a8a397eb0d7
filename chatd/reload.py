"""A reload (SIGHUP): read the configuration again and apply what can change live.

The command line is parsed again, so the configuration file and the MOTD
are read again and checked exactly as at start-up; a bad file is logged
and changes nothing.  What can change without dropping anyone is applied:
the limits (through ``ChatService.reconfigure`` and ``Admission.reconfigure``),
the MOTD, the server operators, the log level and the TLS certificate files.
The rest (listeners, storage, front-end settings fixed when their factory
was built) is logged as needing a restart and keeps its running value.
"""

from dataclasses import fields, replace

from twisted.logger import Logger
from twisted.python import usage

from chatd.config import schema
from chatd.limits import Limits
from chatd.loglevel import LEVELS

# Limits read once, when something long-lived was built from them.
RESTART_LIMITS = frozenset({
    "max_frame",  # the WebSocket factory's protocol options
    "request_timeout",  # the HTTP site's timeout
    "hash_threads", "hash_queue",  # the password hashing pool
    "ipv6_prefix",  # open connections are counted by their address groups
})
LIVE = (frozenset({"motd", "operators", "log-level", "tls-cert", "tls-key"})
        | {f.name.replace("_", "-") for f in fields(Limits)
           if f.name not in RESTART_LIMITS})
# Logged by name only.
SECRET = frozenset({"db"})


class Reloader:
    log = Logger()

    def __init__(self, options, chat, admission=None, tls=None, levels=None):
        self.options = options  # the settings running now
        self.chat = chat
        self.admission = admission
        self.tls = tls
        self.levels = levels

    def reload(self) -> bool:
        """Apply the configuration as it is now; False (and nothing changed) if it is bad."""
        self.log.info("SIGHUP: reloading the configuration")
        try:
            new = self.options.reread()
        except usage.UsageError as e:
            self.log.error("configuration reload failed, keeping the old settings: {error}",
                           error=str(e))
            new = None
        if new is None:
            if self.tls is not None:
                self.tls.reload()  # a renewed certificate does not wait for a fixed file
            return False
        self._apply(new)
        return True

    def _apply(self, new) -> None:
        old = self.options
        changed = [key for key in sorted(schema(old)) if old.get(key) != new.get(key)]
        live = LIVE
        if self.tls is None or new["tls-cert"] is None:
            live = LIVE - {"tls-cert", "tls-key"}  # TLS listeners start or stop on a restart
        # A more verbose level first, so its own change is logged; a quieter one last.
        louder = self.levels is not None and LEVELS[new["log-level"]] < self.levels.level
        if louder:
            self.levels.set(new["log-level"])
        for key in changed:
            if key in live:
                shown = "(hidden)" if key in SECRET else new[key]
                self.log.info("reload: {key} is now {value}", key=key, value=shown)
            else:
                self.log.warn("reload: {key} changed in the configuration; it needs a "
                              "restart to take effect", key=key)
                new[key] = old[key]  # the running value, until a restart
        limits = replace(new["limits"], **{name: getattr(old["limits"], name)
                                           for name in RESTART_LIMITS})
        new["limits"] = limits
        motd = None
        if new["motd-lines"] != old["motd-lines"]:
            motd = new["motd-lines"]
            self.log.info("reload: the MOTD is now {lines} lines", lines=len(motd))
        self.chat.reconfigure(limits=limits, motd=motd, operators=new["operators"])
        if self.admission is not None:
            self.admission.reconfigure(limits)
        if self.levels is not None and not louder:
            self.levels.set(new["log-level"])
        if self.tls is not None:
            self.tls.reload(new["tls-cert"], new["tls-key"])  # a renewal keeps the paths
        if not changed and motd is None:
            self.log.info("reload: no setting changed")
        self.options = new
