"""The benchmark's IRC mode end to end at toy scale (benchmarks/irc_bench.py):
chatd's IRC front end and ngircd, the real IRC server from Debian that
scripts/test-setup installs, in one batch with the line protocol.  As in
test_bench.py no timing is asserted: only that every message reached every
member and that the report is complete."""

import shutil

from .test_bench import bench


def test_irc_fanout_reaches_every_member_on_chatd_and_ngircd():
    assert shutil.which("ngircd"), "ngircd is needed: bash scripts/test-setup"
    n, s, m = 5, 2, 6
    *runs, summary = bench("fanout", "-n", str(n), "-s", str(s), "-m", str(m),
                           "--targets", "chatd-line,chatd-irc,ngircd")
    assert [r["target"] for r in runs] == ["chatd-line", "chatd-irc", "ngircd"]
    for r in runs:
        # chatd's line protocol echoes a message to its sender; IRC does not
        # (nobody asked for echo-message).
        members = n if r["target"] == "chatd-line" else n - 1
        assert (r["deliveries"], r["lost"]) == (s * m * members, 0), r
        assert r["latency_ms"]["samples"] > 0
        assert r["server_peak_rss_kib"] > 0
    assert {row["target"]: row["baseline"] for row in summary["ratios"]} == {
        "chatd-irc": "ngircd"}


def test_irc_idle_connections_register_join_and_stay():
    runs = bench("idle", "-c", "24", "--room-size", "8", "--hold", "0.5",
                 "--targets", "chatd-irc,ngircd")
    *runs, _summary = runs
    for run in runs:
        assert (run["connections"], run["closed"]) == (24, 0), run
        assert run["room_size"] == 8
        assert run["server_rss_kib"] >= run["server_start_rss_kib"] > 0
