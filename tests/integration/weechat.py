"""WeeChat, the real IRC client from Debian, headless (``weechat-headless``).

It is configured and connected by the commands given with ``-r``; the test
types into it through its FIFO (the fifo plugin, from ``weechat-plugins``) and
reads what it shows from its logger files, polled until a deadline.  Each
instance has its own home directory; ``close`` stops only its own process.
"""

import glob
import os
import shutil
import subprocess
import time

TIMEOUT = 10.0
SERVER = "chatd"


def available() -> bool:
    return bool(shutil.which("weechat-headless")) and bool(
        glob.glob("/usr/lib/*/weechat/plugins/fifo.so"))


class WeeChat:
    def __init__(self, home, port: int, nick: str, *, autojoin: str | None = None,
                 sasl: tuple | None = None, host: str = "127.0.0.1"):
        self.home = str(home)
        self.nick = nick
        os.makedirs(self.home, exist_ok=True)
        commands = [
            "/set logger.file.flush_delay 0",  # write each line to the log at once
            "/set plugins.var.fifo.fifo on",
            f"/server add {SERVER} {host}/{port}",
            f"/set irc.server.{SERVER}.nicks {nick}",
        ]
        if autojoin:
            commands.append(f"/set irc.server.{SERVER}.autojoin {autojoin}")
        if sasl:
            account, password = sasl
            commands += [f"/set irc.server.{SERVER}.sasl_mechanism plain",
                         f"/set irc.server.{SERVER}.sasl_username {account}",
                         f"/set irc.server.{SERVER}.sasl_password {password}"]
        commands.append(f"/connect {SERVER}")
        assert not any(";" in c for c in commands), "-r separates commands with ';'"
        self.out = open(os.path.join(self.home, "stdout.txt"), "wb")
        self.proc = subprocess.Popen(
            ["weechat-headless", "--dir", self.home, "-r", ";".join(commands)],
            stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
            env={"HOME": self.home, "LANG": "C.UTF-8",
                 "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        self.fifo = self._wait(lambda: next(iter(glob.glob(
            os.path.join(self.home, "weechat_fifo_*"))), None), "its FIFO")

    def _wait(self, probe, what: str, timeout: float = TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if self.proc.poll() is not None:
                raise AssertionError(f"weechat exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"weechat never showed {what}; server log:\n"
                                     f"{self.log('server.' + SERVER)[-3000:]}")
            time.sleep(0.05)

    def log(self, buffer: str) -> str:
        """The logger file of ``buffer`` (``#lobby``, ``server.chatd``, a nick)."""
        name = f"irc.{buffer}" if buffer.startswith("server.") else f"irc.{SERVER}.{buffer}"
        path = os.path.join(self.home, "logs", f"{name}.weechatlog")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, buffer: str, text: str, timeout: float = TIMEOUT) -> str:
        return self._wait(lambda: text in self.log(buffer) and self.log(buffer),
                          f"{text!r} in {buffer}", timeout)

    def type(self, buffer: str, text: str) -> None:
        """Type ``text`` into ``buffer`` (a room, or ``server.chatd`` for commands)."""
        name = f"irc.{buffer}" if buffer.startswith("server.") else f"irc.{SERVER}.{buffer}"
        with open(self.fifo, "w", encoding="utf-8") as f:
            f.write(f"{name} *{text}\n")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
