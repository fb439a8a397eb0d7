"""``benchmarks/bench.py`` end to end at toy scale, so the benchmark tool cannot rot.

It starts real daemons and the bare baselines itself; here we only check that
every message sent reached every member and that the report is complete.
No timing is asserted: speed numbers live in docs/performance.rst.  The tool is
run the way docs/performance.rst says, ``python benchmarks/bench.py`` from the
checkout, not imported: it is not part of the installed package.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench.py"


def bench(*args) -> list[dict]:
    # No PYTHONPATH help: the tool must find the checkout's chatd by itself.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",
                                                            "PYTHONDONTWRITEBYTECODE")}
    out = subprocess.run(
        [sys.executable, str(BENCH.relative_to(ROOT)), *args, "--json-only",
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
    assert {r.get("chatd_tree") for r in runs if r["target"].startswith("chatd")} == {str(ROOT)}


def test_idle_connections_log_in_join_and_stay():
    (run,) = bench("idle", "-c", "30", "--room-size", "10", "--hold", "0.5",
                   "--targets", "chatd-jsonl")
    assert (run["connections"], run["closed"]) == (30, 0)
    assert run["server_rss_kib"] >= run["server_start_rss_kib"] > 0


def test_chatd_tree_runs_the_daemon_from_another_source_tree(tmp_path):
    # A second tree, as a `git worktree` of another commit would be.
    other = tmp_path / "other"
    for part in ("chatd", "twisted"):
        shutil.copytree(ROOT / part, other / part,
                        ignore=shutil.ignore_patterns("__pycache__", "dropin.cache"))
    n, s, m = 3, 1, 4
    *runs, summary = bench("fanout", "-n", str(n), "-s", str(s), "-m", str(m),
                           "--chatd-tree", f"other={other}",
                           "--targets", "chatd-line,chatd-line@other")
    assert [(r["target"], r["chatd_tree"]) for r in runs] == [
        ("chatd-line", str(ROOT)), ("chatd-line@other", str(other))]
    for r in runs:
        assert (r["deliveries"], r["lost"]) == (s * m * n, 0), r
    # The daemon really imported the other tree's code (and compiled it there).
    assert list((other / "chatd" / "__pycache__").glob("tap.*.pyc"))
    assert [(row["target"], row["baseline"]) for row in summary["ratios"]] == [
        ("chatd-line@other", "chatd-line")]


def test_chatd_tree_must_be_a_chatd_source_tree(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH), "fanout", "--chatd-tree",
                          f"x={tmp_path}", "--targets", "chatd-line@x"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "has no chatd/tap.py" in out.stderr


def test_the_protobuf_target_reaches_every_member():
    n, s, m = 4, 2, 5
    (run,) = bench("fanout", "-n", str(n), "-s", str(s), "-m", str(m),
                   "--targets", "chatd-pb")
    assert (run["target"], run["deliveries"], run["lost"]) == ("chatd-pb", s * m * n, 0)
    assert run["latency_ms"]["samples"] > 0  # the send times were found in binary frames


def test_formats_bench_compares_both_formats_in_one_batch():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "benchmarks/formats_bench.py", "--sizes", "5", "--deliveries", "100",
         "-s", "2", "--repeat", "1", "--number", "20",
         "--bench-arg=--server-cpu=", "--bench-arg=--client-cpu=", "--bench-arg=--quiet=5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    codec = {r["event"]: r for r in rows if r["part"] == "codec"}
    assert set(codec) == {"message", "join", "message ack"}
    for r in codec.values():
        assert 0 < r["pb_payload_bytes"] < r["json_payload_bytes"]
        assert r["pb_frame_bytes"] > r["pb_payload_bytes"]
    fanout = [r for r in rows if r["part"] == "fanout"]
    assert [r["target"] for r in fanout] == ["chatd-ws", "chatd-pb"]
    assert all(r["lost"] == 0 and r["deliveries"] == 5 * 2 * 10 for r in fanout)
    assert "fan-out" in out.stderr and "per event" in out.stderr


# -- the storm scenarios (benchmarks/storms.py), at toy scale ---------------------------

def test_unbatched_fanout_reaches_every_member():
    (run,) = bench("unbatched", "-n", "5", "-s", "2", "-m", "5", "--rate", "200",
                           "--targets", "chatd-line")
    assert (run["scenario"], run["rate"], run["deliveries"], run["lost"]) == (
        "unbatched", 200, 2 * 5 * 5, 0)
    assert run["latency_ms"]["samples"] > 0


def test_joinstorm_gets_every_client_into_one_room():
    (run,) = bench("joinstorm", "-n", "30", "--window", "10")
    assert (run["scenario"], run["clients"]) == ("joinstorm", 30)
    assert run["server_cpu_s"] >= 0 and run["server_peak_rss_kib"] > 0


def test_loginstorm_logs_everyone_in_with_password_then_with_resume_token():
    (run,) = bench("loginstorm", "--users", "4")
    for phase in ("password", "resume"):
        assert (run[phase]["logged_in"], run[phase]["not_logged_in"],
                run[phase]["dropped"]) == (4, 0, 0), run
        assert run[phase]["ack_wait_ms"]["samples"] == 4
    assert run["lost"] == 0


def test_reconnect_storm_brings_everyone_back_with_scrollback_after_a_restart():
    (run,) = bench("reconnect", "-n", "40", "--users", "20", "--rooms", "2",
                   "--scrollback", "3", "--spread", "0.5", "--probes", "2",
                   "--per-address", "10")
    assert (run["back_with_scrollback"], run["lost"], run["dropped"], run["refusals"]) == (
        40, 0, 0, 0), run
    assert run["probe_rtt_ms"]["samples"] > 0 and run["ping_rtt_ms"]["samples"] > 0
