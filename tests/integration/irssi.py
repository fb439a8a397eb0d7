"""irssi, the real IRC client from Debian, run in a private tmux server.

The test types into it with ``tmux send-keys`` and reads its screen with
``tmux capture-pane``; every wait polls the screen until a deadline.  Each
instance has its own tmux socket and irssi home directory, and ``close`` kills
only that tmux server.
"""

import os
import shutil
import subprocess
import time
import uuid

TIMEOUT = 10.0


def available() -> bool:
    return bool(shutil.which("irssi") and shutil.which("tmux"))


class Irssi:
    def __init__(self, home, port: int, nick: str, *, host: str = "127.0.0.1",
                 width: int = 220, height: int = 50):
        self.home = home
        self.nick = nick
        self.socket = f"chatd-test-{uuid.uuid4().hex[:12]}"
        os.makedirs(home, exist_ok=True)
        # No theme or scripts from the machine; timestamps off so lines are
        # predictable; irssi's own flood queue (a command per 2.2 s past the
        # first five) off, so a test's typing is sent as it is typed.
        with open(os.path.join(home, "config"), "w", encoding="utf-8") as f:
            f.write('settings = {\n'
                    '  "irc/core" = { cmd_queue_speed = "0msec"; cmds_max_at_once = "1000"; };\n'
                    '  "fe-common/core" = { timestamps = "no"; };\n'
                    '};\n')
        env = {"HOME": str(home), "TERM": "xterm-256color", "LANG": "C.UTF-8",
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        command = (f"irssi --home={home} -n {nick} -c {host} -p {port}")
        self._tmux("new-session", "-d", "-s", "irc", "-x", str(width), "-y", str(height),
                   command, env=env)

    def _tmux(self, *args, env=None, check=True) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], env=env,
                             capture_output=True, text=True, timeout=10)
        if check and out.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def screen(self) -> str:
        """The visible window and the scrollback above it."""
        return self._tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "irc")

    def type(self, text: str) -> None:
        """Type a line and press Enter (``-l``: the text literally, no key names)."""
        self._tmux("send-keys", "-t", "irc", "-l", text)
        self._tmux("send-keys", "-t", "irc", "Enter")

    def wait_for(self, predicate, what: str, timeout: float = TIMEOUT) -> str:
        """Poll the screen until ``predicate(screen)`` holds; the screen then."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"irssi never showed {what}; screen:\n{screen}")
            time.sleep(0.05)

    def wait_text(self, text: str, timeout: float = TIMEOUT) -> str:
        return self.wait_for(lambda s: text in s, repr(text), timeout)

    def window(self, number: int) -> None:
        """Switch to window ``number`` (irssi: 1 is the status window, then joins)."""
        self.type(f"/window {number}")

    def close(self) -> None:
        self._tmux("kill-server", check=False)
