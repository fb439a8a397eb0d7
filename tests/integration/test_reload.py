"""The configuration file and SIGHUP through the real daemon: a reload reaches the
sessions already connected, shows the new MOTD, and a bad file changes nothing."""

import os
import signal
import subprocess
import sys

from .conftest import ROOT


def hangup(d, marker: str, count: int = 1) -> None:
    """SIGHUP, and wait until the daemon has logged the reload's outcome ``count`` times."""
    os.kill(d.pid, signal.SIGHUP)
    d.wait_for(lambda: d.log().count(marker) >= count, f"{marker!r} in the log")


def test_reload_applies_new_limits_and_motd_to_running_sessions(start_daemon, tmp_path):
    motd = tmp_path / "motd.txt"
    motd.write_text("Welcome to the test server.\nBe kind.\n")
    conf = tmp_path / "chatd.toml"
    conf.write_text(f'max-message = 100\nmotd = "{motd}"\nmax-per-ip = 50\n')
    d = start_daemon("--config", str(conf), "--name", "cmdline")
    alice = d.line()
    alice.expect("Welcome to cmdline")  # the command line's name
    assert alice.expect("* ") == "* Welcome to the test server."
    assert alice.read() == "* Be kind."
    alice.backlog.append("* Welcome")  # already read: login() starts by expecting it
    alice.login("alice", "#reload")
    bob = d.ws().login("bob", "#reload")
    assert {"type": "notice", "text": "Be kind."} in bob.seen
    alice.send("x" * 60)
    bob.expect({"type": "message", "text": "x" * 60})

    conf.write_text(f'max-message = 50\nmotd = "{motd}"\nmax-per-ip = 50\n'
                    'name = "ignored: the command line wins"\n')
    motd.write_text("Maintenance at noon.\n")
    hangup(d, "reload: max-message is now 50")
    assert "reload: the MOTD is now 1 lines" in d.log()
    # The same sessions, the new limit.
    alice.send("x" * 60)
    assert alice.expect("! error") == ("! error message_too_long: a message is at most "
                                       "50 characters")
    assert bob.request({"type": "message", "room": "#reload", "text": "y" * 51})["code"] \
        == "message_too_long"
    # New connections get the new MOTD, on both front ends.
    carol = d.line()
    carol.expect("Welcome to cmdline")
    assert carol.read() == "* Maintenance at noon."
    dave = d.ws()
    dave.expect({"type": "hello"})
    assert dave.read() == {"type": "notice", "text": "Maintenance at noon."}


def test_a_bad_file_keeps_the_old_settings_and_says_why(start_daemon, tmp_path):
    conf = tmp_path / "chatd.toml"
    conf.write_text("max-message = 100\n")
    d = start_daemon("--config", str(conf))
    alice = d.line().login("alice", "#bad")
    conf.write_text("max-message = 10\nmax-per-ip = -1\n")
    hangup(d, "configuration reload failed")
    assert f"{conf}: max-per-ip: max_per_ip must be positive" in d.log()
    alice.send("x" * 50)  # neither the bad value nor its good neighbour applied
    alice.expect("[#bad] <alice> " + "x" * 50)

    # The command line names the listeners: the file's are ignored, nothing changes.
    conf.write_text("max-message = 100\nline = [\"tcp:1\"]\n")
    hangup(d, "reload: no setting changed")
    conf.write_text("max-message = 100\ndata-dir = \"elsewhere\"\n")
    hangup(d, "reload: data-dir changed in the configuration; it needs a restart")
    alice.send("still here")
    alice.expect("<alice> still here")


def test_a_bad_file_stops_start_up_naming_file_and_key(tmp_path):
    conf = tmp_path / "chatd.toml"
    conf.write_text("max-mesage = 100\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                          "-n", "--pidfile=", "chatd", "--config", str(conf)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert out.returncode != 0
    said = out.stdout + out.stderr
    assert f"{conf}: max-mesage: unknown key (did you mean 'max-message'?)" in said


def test_the_log_level_changes_on_reload(start_daemon, tmp_path):
    conf = tmp_path / "chatd.toml"
    conf.write_text('log-level = "info"\n')
    d = start_daemon("--config", str(conf))
    conf.write_text('log-level = "warn"\noperators = ["alice"]\n')
    hangup(d, "SIGHUP: reloading the configuration", 1)
    quiet = d.line()
    quiet.expect("Welcome")
    quiet.send("/nick quiet")
    quiet.expect("you are now quiet")
    quiet.close()
    conf.write_text('log-level = "info"\n')
    hangup(d, "reload: log-level is now info")
    loud = d.line().login("loud")
    loud.close()
    d.wait_for(lambda: "session loud from" in d.log(), "loud's close in the log")
    log = d.log()
    assert "session quiet from" not in log  # an info line, while the level was warn
    # The reload that made it quieter still said what it changed.
    assert "reload: log-level is now warn" in log and "reload: operators is now" in log
