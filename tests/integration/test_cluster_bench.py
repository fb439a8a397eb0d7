"""``benchmarks/bench.py cluster`` end to end at toy scale: every message reaches
every member on both nodes, and each room message costs exactly one Redis
PUBLISH (counted by the Redis server the run starts for itself).  No timing is
asserted: the numbers live in docs/performance.rst."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("spread", [False, True], ids=["senders-on-a", "spread"])
def test_cluster_bench_delivers_everything_with_one_publish_per_message(spread):
    n, s, m = 9, 3, 7
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "benchmarks/bench.py", "cluster", "-n", str(n), "-s", str(s),
         "-m", str(m), "--rate", "200", "--json-only", "--server-cpu", "",
         "--server2-cpu", "", "--client-cpu", "", "--timeout", "30", "--quiet", "5",
         *(["--spread"] if spread else [])],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    single, cluster, summary = [json.loads(line) for line in out.stdout.splitlines()]
    assert (single["target"], cluster["target"]) == ("single", "cluster")
    for run in (single, cluster):
        assert run["lost"] == 0 and run["messages"] == s * m
        members = sum(node["members"] for node in run["nodes"].values())
        assert members == n
        # chatd echoes to the sender: every member gets every message.
        assert sum(node["deliveries"] for node in run["nodes"].values()) == n * s * m
    a, b = cluster["nodes"]["a"], cluster["nodes"]["b"]
    if spread:
        assert abs(a["members"] - b["members"]) <= 1  # everyone alternates, senders too
    else:
        assert a["members"] > s and b["members"] > 0  # the senders and some receivers on A
    assert cluster["redis_publishes"] == s * m
    assert summary["summary"]["publishes_per_message"] == 1.0
