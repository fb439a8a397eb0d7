"""Nick ownership: which session holds which nick (case-insensitively).

The only writer of ``Session.nick``, ``Session.key`` and ``Session.nick_at``.
A cluster replaces "nobody here holds it" with a cluster-wide claim at the
calls below, and nowhere else.
"""

from chatd.validate import check_nick


class Nicks:
    def __init__(self, max_nick: int):
        self.max_nick = max_nick
        self._holders = {}  # nick key -> Session
        self._observers = []  # (on_take, on_release): a cluster's bus follows the local nicks

    def observe(self, on_take=None, on_release=None) -> None:
        """Be told each nick key taken here and each one let go (a clustered bus
        subscribes to the private channel of exactly the nicks held locally)."""
        self._observers.append((on_take, on_release))

    def _tell(self, which: int, key: str) -> None:
        for observer in self._observers:
            if observer[which] is not None:
                observer[which](key)

    def check(self, nick) -> str:
        return check_nick(nick, self.max_nick)

    def get(self, key: str):
        return self._holders.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._holders

    def __len__(self) -> int:
        return len(self._holders)

    def items(self):
        """(key, Session) of every nick held, for reading."""
        return self._holders.items()

    def take(self, session, nick: str, key: str, now: float | None = None) -> str | None:
        """Give ``session`` a nick nobody else holds; returns its old nick (None if first)."""
        old, old_key = session.nick, session.key
        if old_key is not None and self._holders.get(old_key) is session:
            del self._holders[old_key]
            if old_key != key:
                self._tell(1, old_key)
        session.nick, session.key = nick, key
        fresh = self._holders.get(key) is not session
        self._holders[key] = session
        if fresh and old_key != key:
            self._tell(0, key)
        if now is not None:
            session.nick_at = now
        return old

    def release(self, session) -> None:
        if session.key is not None and self._holders.get(session.key) is session:
            del self._holders[session.key]
            self._tell(1, session.key)
