"""``chatd bench`` end to end at toy scale, so the benchmark tool cannot rot.

It starts real daemons and the bare baselines itself; here we only check that
every message sent reached every member and that the report is complete.
No timing is asserted: speed numbers live in docs/performance.rst.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench(*args) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "chatd.cli", "bench", *args, "--json-only",
         "--server-cpu", "", "--client-cpu", "", "--timeout", "20", "--quiet", "5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_fanout_reaches_every_member_on_every_target():
    n, s, m = 4, 2, 5
    *runs, summary = bench("fanout", "-n", str(n), "-s", str(s), "-m", str(m),
                           "--targets", "bare-line,chatd-line,bare-ws,chatd-ws")
    assert [r["target"] for r in runs] == ["bare-line", "chatd-line", "bare-ws", "chatd-ws"]
    for r in runs:
        # chatd echoes a message to its sender; the bare relays do not.
        members = n if r["target"].startswith("chatd") else n - 1
        assert (r["deliveries"], r["lost"]) == (s * m * members, 0), r
        assert r["latency_ms"]["samples"] > 0
        assert r["server_peak_rss_kib"] > 0
    assert {row["target"] for row in summary["ratios"]} == {"chatd-line", "chatd-ws"}


def test_idle_connections_log_in_join_and_stay():
    (run,) = bench("idle", "-c", "30", "--room-size", "10", "--hold", "0.5",
                   "--targets", "chatd-jsonl")
    assert (run["connections"], run["closed"]) == (30, 0)
    assert run["server_rss_kib"] >= run["server_start_rss_kib"] > 0
