"""README's online backup command works against the live daemon's WAL database.

The copy is taken while the daemon commits a burst of messages, passes
SQLite's integrity check, holds at least everything acknowledged before the
backup began, and a new daemon started on it serves that history.
"""

import re
import shlex
import shutil
import sqlite3
import subprocess

import pytest

from .conftest import ROOT

# One client writes as fast as it can: no flood control in the way.
UNLIMITED = ("--rate", "100000", "--burst", "100000")
README = (ROOT / "README.rst").read_text(encoding="utf-8")


def readme_backup_command() -> list[str]:
    found = re.findall(r'^    (sqlite3 \S+ "\.backup \S+")$', README, re.M)
    assert len(found) == 1, "README.rst should give one sqlite3 .backup command"
    return shlex.split(found[0])


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="needs the sqlite3 shell")
def test_readme_backup_of_a_live_database_is_consistent_and_restores(start_daemon,
                                                                       tmp_path):
    d = start_daemon(*UNLIMITED)
    live = d.workdir / "chatd-data" / "chatd.sqlite3"
    assert (live.parent / "chatd.sqlite3-wal").exists()  # WAL mode: the hard case
    c = d.line().login("saver", "#bk")
    for i in range(20):
        c.send(f"before {i}")
    c.expect("before 19")  # echoed: committed

    for i in range(300):  # still being committed while the backup runs
        c.send(f"during {i}")
    copy = tmp_path / "restore" / "chatd-data" / "chatd.sqlite3"
    copy.parent.mkdir(parents=True)
    argv = readme_backup_command()
    argv[1], argv[2] = str(live), f".backup {copy}"
    subprocess.run(argv, check=True, timeout=60, capture_output=True)
    c.expect("during 299")

    with sqlite3.connect(copy) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        texts = [t for (t,) in db.execute("SELECT text FROM messages ORDER BY id")]
    assert texts[:20] == [f"before {i}" for i in range(20)]
    during = texts[20:]
    assert during == [f"during {i}" for i in range(len(during))]  # a clean prefix

    restored = start_daemon(*UNLIMITED, start=False)
    shutil.copytree(copy.parent, restored.workdir / "chatd-data")
    restored.start()
    r = restored.line().login("reader", "#bk")
    r.expect(texts[-1])
