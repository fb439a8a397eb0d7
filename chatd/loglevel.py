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


def destination(twistd_options):
    """The observer twistd would open from its own options (UnixAppLogger's rules)."""
    if twistd_options.get("syslog"):
        from twisted.python import syslog
        return LegacyLogObserverWrapper(
            syslog.SyslogObserver(twistd_options.get("prefix") or "twisted").emit)
    name = twistd_options.get("logfile") or ""
    if name == "-" or (not name and twistd_options.get("nodaemon")):
        return textFileLogObserver(sys.stdout)
    return textFileLogObserver(LogFile.fromFullPath(name or "twistd.log"))


class LevelledTop(service.MultiService):
    """The service tree's root; puts the level filter in front of twistd's log."""

    def __init__(self, levels: LevelFilter, twistd_options=None):
        super().__init__()
        self.levels = levels
        self.twistd_options = twistd_options

    def setServiceParent(self, parent):
        if (isinstance(parent, Componentized) and self.twistd_options is not None
                and parent.getComponent(ILogObserver) is None):
            parent.setComponent(ILogObserver,
                                self.levels.wrap(destination(self.twistd_options)))
        return super().setServiceParent(parent)
