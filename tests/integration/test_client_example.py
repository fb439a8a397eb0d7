"""examples/bot.py, the documented use of chatd.client, works against the daemon."""

import subprocess
import sys
import time

from .conftest import ROOT
from .test_client_cli import cli_env


def test_example_bot_answers_in_its_room(daemon):
    bot = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "bot.py"),
         f"ws://127.0.0.1:{daemon.ws_port}/ws", "#bots", "--nick", "helper"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env())
    try:
        user = daemon.ws().login("user", "#bots")
        deadline = time.monotonic() + 10
        while "helper" not in user.request({"type": "who", "room": "#bots"})["nicks"]:
            assert bot.poll() is None, bot.stderr.read().decode()
            assert time.monotonic() < deadline, "the bot never joined"
            time.sleep(0.05)
        user.request({"type": "message", "room": "#bots", "text": "!ping"})
        assert user.expect({"type": "message", "from": "helper"})["text"] == "pong"
    finally:
        bot.terminate()
        bot.wait(10)
        bot.stderr.close()
