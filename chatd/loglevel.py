"""``--log-level``: the least severe log events the daemon keeps, changeable live.

twistd builds its log observer (``--logfile``, ``--syslog``) itself, after
``makeService`` and out of our reach, unless the application carries an
``ILogObserver`` component.  So the top service, when twistd parents it to
its application, registers that component: the same destination twistd
would have opened, behind a :class:`LevelFilter`.  A reload changes the
filter's level; nothing is reopened.  (``twistd --logger=...`` still wins:
twistd asks it before the component.)
"""

import sys

from twisted.application import service
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogLevel,
    PredicateResult,
    textFileLogObserver,
)
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile
from zope.interface import implementer

from chatd.logs import json_file_observer

LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
          "error": LogLevel.error}


@implementer(ILogFilterPredicate)
class LevelFilter:
    """Drops events below the level.

    Not Twisted's ``LogLevelFilterPredicate``: that one also drops every event
    without a namespace, which we would rather see.
    """

    def __init__(self, level: str = "info"):
        self.name = level
        self.level = LEVELS[level]

    def set(self, level: str) -> None:
        self.name = level
        self.level = LEVELS[level]

    def __call__(self, event) -> PredicateResult:
        level = event.get("log_level")
        if level is not None and level < self.level:
            return PredicateResult.no
        return PredicateResult.maybe

    def wrap(self, observer):
        return FilteringLogObserver(observer, [self])


def destination(twistd_options, log_format: str = "text"):
    """The observer twistd would open from its own options (UnixAppLogger's rules),
    writing text or, with ``log_format`` json, one JSON object a line (chatd.logs)."""
    if twistd_options.get("syslog"):
        from twisted.python import syslog
        return LegacyLogObserverWrapper(
            syslog.SyslogObserver(twistd_options.get("prefix") or "twisted").emit)
    name = twistd_options.get("logfile") or ""
    if name == "-" or (not name and twistd_options.get("nodaemon")):
        out = sys.stdout
    else:
        out = LogFile.fromFullPath(name or "twistd.log")
    if log_format == "json":
        return json_file_observer(out)
    return textFileLogObserver(out)


class LevelledTop(service.MultiService):
    """The service tree's root; gives twistd its log: the level filter (live on
    reload) in front of text or JSON lines, where twistd would write them."""

    def __init__(self, levels: LevelFilter, twistd_options=None, log_format: str = "text"):
        super().__init__()
        self.levels = levels
        self.twistd_options = twistd_options
        self.log_format = log_format

    def setServiceParent(self, parent):
        if (isinstance(parent, Componentized) and self.twistd_options is not None
                and parent.getComponent(ILogObserver) is None):
            parent.setComponent(ILogObserver, self.levels.wrap(
                destination(self.twistd_options, self.log_format)))
        return super().setServiceParent(parent)
