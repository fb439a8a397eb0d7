"""Cluster runs of the chatd benchmark: one room spread over two nodes joined by
Redis, against a single node, in the same batch.

Run it as ``python benchmarks/bench.py cluster [options]`` (or this file directly).

Each round runs, back to back:

* ``single``: one node on PostgreSQL (a fresh database), every member on it;
* ``cluster``: two nodes on one fresh database and a Redis server of the run's
  own (started here on a free port, so its counters are ours alone), the
  senders and half of the receivers on node A, the other half on node B.

The load is bench.py's fan-out (same Swarm and run loop: every message carries
its send time, probe receivers measure latency), at ``--rate`` messages/s in
total.  Reported per node: CPU seconds (from /proc) per delivery made to that
node's own members; end-to-end latency p50/p99 of the members on each node; and
the Redis ``PUBLISH`` calls during the run (``INFO commandstats``, reset after
the set-up) per room message sent, which must be exactly 1.
"""

import argparse
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import (  # noqa: E402  (bench.py lives beside this file, not in a package)
    TARGETS,
    Conn,
    Server,
    Swarm,
    free_port,
    percentiles,
    proc_stats,
    run_fanout,
)

PG_ADMIN = os.environ.get("CHATD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET = "chatd-line"


# -- PostgreSQL and Redis of the run's own ---------------------------------------------------

class Database:
    """A fresh PostgreSQL database, dropped by ``drop()``."""

    def __init__(self):
        import psycopg2  # chatd's own dependency for --db postgresql://
        self.psycopg2 = psycopg2
        self.name = f"chatd_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._admin(f'CREATE DATABASE "{self.name}"')
        base, _, _ = PG_ADMIN.rpartition("/")
        self.url = f"{base}/{self.name}"

    def _admin(self, sql):
        conn = self.psycopg2.connect(PG_ADMIN, connect_timeout=5)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.close()

    def drop(self):
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Redis:
    """redis-server on a free port of 127.0.0.1, no persistence; ``stop()`` ends it."""

    def __init__(self, workdir: str, cpu: str | None):
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (scripts/test-setup installs it)")
        self.port = free_port()
        cmd = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
               "--appendonly", "no", "--dir", workdir]
        if cpu is not None:
            cmd = ["taskset", "-c", cpu, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                if self.command("PING") == "PONG":
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args) -> str:
        """One inline command; the reply's text (enough for PING, INFO, CONFIG)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            parts = [x.encode() for x in args]
            s.sendall(b"*%d\r\n" % len(parts)
                      + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in parts))
            data = b""
            while True:
                chunk = s.recv(1 << 16)
                data += chunk
                if not chunk or _complete(data):
                    break
        head, _, rest = data.partition(b"\r\n")
        if head.startswith(b"$"):
            return rest[:int(head[1:])].decode()
        return head[1:].decode()

    def publishes(self) -> int:
        for line in self.command("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_publish:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _complete(data: bytes) -> bool:
    head, sep, rest = data.partition(b"\r\n")
    if not sep:
        return False
    if head.startswith(b"$"):
        return len(rest) >= int(head[1:]) + 2
    return True


# -- clients on two nodes --------------------------------------------------------------------

class SplitSwarm(Swarm):
    """bench.Swarm with its members on several nodes: member i on ``ports[node_of(i)]``."""

    def __init__(self, dialect, ports, node_of, *args, **kw):
        super().__init__(dialect, ports[0], *args, **kw)
        self.ports = ports
        self.node_of = node_of

    def _open(self, i: int) -> Conn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.ports[self.node_of(i)]))
        conn = Conn(sock, i, self.room_of(i))
        self.sel.register(sock, selectors.EVENT_WRITE, conn)
        return conn


def _node_figures(conns, cpu_s: float) -> dict:
    got = sum(c.got for c in conns)
    lat = sorted(x for c in conns if c.probe for x in c.lat)
    return {"members": len(conns), "deliveries": got, "cpu_s": round(cpu_s, 3),
            "us_per_delivery": round(1e6 * cpu_s / got, 3) if got else None,
            "latency_ms": percentiles(lat)}


def bench_args(args) -> argparse.Namespace:
    """What bench.Server and bench.run_fanout read, from our options."""
    return argparse.Namespace(
        clients=args.clients, connections=0, senders=args.senders, messages=args.messages,
        rate=args.rate, size=args.size, batch=8, slow=0, probes=args.probes,
        quiet=args.quiet, chatd_trees={}, baselines=str(HERE), timeout=args.timeout)


def run_single(args, run_no: int, logdir: str) -> dict:
    b = bench_args(args)
    db = Database()
    server = None
    swarm = None
    try:
        server = Server(TARGET, b, args.server_cpu, ["--db", db.url, *args.chatd_arg], logdir)
        swarm = Swarm(TARGETS[TARGET][0], server.port, args.clients, args.clients,
                      f"s{run_no}n")
        swarm.connect_all(args.timeout)
        swarm.sync(args.timeout)
        before = proc_stats(server.pid)["cpu"]
        result = run_fanout(swarm, b, None)
        cpu = proc_stats(server.pid)["cpu"] - before
        return {"scenario": "cluster", "target": "single", "run": run_no,
                "rate": args.rate, "messages": args.senders * args.messages,
                "lost": result["lost"], "latency_ms": result["latency_ms"],
                "nodes": {"single": _node_figures(swarm.conns, cpu)}}
    finally:
        if swarm is not None:
            swarm.close()
        if server is not None:
            server.stop()
        db.drop()


def run_cluster(args, run_no: int, logdir: str) -> dict:
    b = bench_args(args)
    db = Database()
    redis = Redis(logdir, args.client_cpu)
    prefix = f"chatdbench:{uuid.uuid4().hex[:8]}:"
    servers = []
    swarm = None
    try:
        for name, cpu in (("a", args.server_cpu), ("b", args.server2_cpu)):
            servers.append(Server(TARGET, b, cpu, [
                "--db", db.url, "--redis", redis.url, "--redis-prefix", prefix,
                "--node-id", f"bench-{name}", *args.chatd_arg], logdir))
        # Senders first, all on node A (the set-up: A does all the
        # ingestion), or with --spread every member alternates, senders too, as
        # a load balancer would place them; receivers alternate between A and B.
        senders = 0 if args.spread else args.senders

        def node_of(i):
            return 0 if i < senders else (i - senders) % 2

        swarm = SplitSwarm(TARGETS[TARGET][0], [s.port for s in servers], node_of,
                           args.clients, args.clients, f"c{run_no}n")
        swarm.connect_all(args.timeout)
        swarm.sync(args.timeout)
        time.sleep(0.5)  # the SYNC rounds' last publications are through
        redis.command("CONFIG", "RESETSTAT")
        before = [proc_stats(s.pid)["cpu"] for s in servers]
        result = run_fanout(swarm, b, None)
        cpu = [proc_stats(s.pid)["cpu"] - x for s, x in zip(servers, before)]
        publishes = redis.publishes()
        sent = args.senders * args.messages
        by_node = [[c for c in swarm.conns if node_of(c.index) == n] for n in (0, 1)]
        return {"scenario": "cluster", "target": "cluster", "run": run_no,
                "rate": args.rate, "messages": sent, "lost": result["lost"],
                "latency_ms": result["latency_ms"],
                "redis_publishes": publishes,
                "publishes_per_message": round(publishes / sent, 4) if sent else None,
                "nodes": {"a": _node_figures(by_node[0], cpu[0]),
                          "b": _node_figures(by_node[1], cpu[1])}}
    finally:
        if swarm is not None:
            swarm.close()
        for s in servers:
            s.stop()
        redis.stop()
        db.drop()


def summary(results) -> dict:
    """Medians over the rounds: each node's CPU per delivery over the single node's
    (and both nodes' CPU over all deliveries), and the p50/p99 each node's members
    see above the single node's (on B: the Redis hop)."""
    def med(values):
        values = sorted(v for v in values if v is not None)
        return values[len(values) // 2] if values else None

    single = [r for r in results if r["target"] == "single"]
    cluster = [r for r in results if r["target"] == "cluster"]
    base = med(r["nodes"]["single"]["us_per_delivery"] for r in single)
    out = {}
    for node in ("a", "b"):
        mine = med(r["nodes"][node]["us_per_delivery"] for r in cluster)
        out[f"cpu_per_delivery_{node}_over_single"] = (
            round(mine / base, 3) if mine is not None and base else None)
    total = med(1e6 * sum(n["cpu_s"] for n in r["nodes"].values())
                / max(1, sum(n["deliveries"] for n in r["nodes"].values())) for r in cluster)
    out["cpu_per_delivery_both_over_single"] = round(total / base, 3) if base else None
    for q in ("p50", "p99"):
        one = med(r["nodes"]["single"]["latency_ms"].get(q) for r in single)
        for node in ("a", "b"):
            two = med(r["nodes"][node]["latency_ms"].get(q) for r in cluster)
            out[f"{q}_added_ms_{node}"] = (round(two - one, 3)
                                           if one is not None and two is not None else None)
        # Within each cluster round, B's members against A's: the same messages
        # and commits, so the difference is the Redis hop (and B's own turn).
        out[f"{q}_hop_ms"] = med(
            round(r["nodes"]["b"]["latency_ms"][q] - r["nodes"]["a"]["latency_ms"][q], 3)
            for r in cluster
            if r["nodes"]["a"]["latency_ms"].get(q) is not None
            and r["nodes"]["b"]["latency_ms"].get(q) is not None)
    out["publishes_per_message"] = med(r["publishes_per_message"] for r in cluster)
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(prog="benchmarks/bench.py cluster",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--clients", type=int, default=100, help="room members in all")
    p.add_argument("-s", "--senders", type=int, default=10,
                   help="members who send (all on node A unless --spread)")
    p.add_argument("--spread", action="store_true",
                   help="senders alternate between the nodes like everyone else")
    p.add_argument("-m", "--messages", type=int, default=200, help="messages per sender")
    p.add_argument("--rate", type=float, default=1000, help="total messages/s (0: unthrottled)")
    p.add_argument("--size", type=int, default=48, help="bytes of message text")
    p.add_argument("--probes", type=int, default=20, help="receivers that measure latency")
    p.add_argument("--repeat", type=int, default=1, help="rounds of single + cluster")
    p.add_argument("--server-cpu", default="0", help="core for the single node and node A")
    p.add_argument("--server2-cpu", default="0", help="core for node B")
    p.add_argument("--client-cpu", default="1", help="core for this generator and Redis")
    p.add_argument("--chatd-arg", action="append", default=[], help="extra chatd option")
    p.add_argument("--timeout", type=float, default=120, help="seconds for set-up and sync")
    p.add_argument("--quiet", type=float, default=10.0,
                   help="give up on missing deliveries after this many silent seconds")
    p.add_argument("--logdir", help="keep the servers' logs here")
    p.add_argument("--json-only", action="store_true", help="print only the JSON lines")
    args = p.parse_args(argv)
    if args.senders >= args.clients:
        p.error("need more clients than senders")
    args.server_cpu = args.server_cpu or None
    args.server2_cpu = args.server2_cpu or None
    args.client_cpu = args.client_cpu or None
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.client_cpu:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpu.split(",")})
    results = []
    with tempfile.TemporaryDirectory(prefix="chatd-cluster-bench-") as tmp:
        logdir = args.logdir or tmp
        for run_no in range(1, args.repeat + 1):
            for run in (run_single, run_cluster):
                result = run(args, run_no, logdir)
                results.append(result)
                print(json.dumps(result), flush=True)
    ratios = summary(results)
    print(json.dumps({"summary": ratios}), flush=True)
    if not args.json_only:
        print(file=sys.stderr)
        for r in results:
            for node, f in r["nodes"].items():
                print(f"{r['target']:>8} run {r['run']} node {node:>6}: members {f['members']:>4}"
                      f"  deliveries {f['deliveries']:>7}  us/delivery {f['us_per_delivery']}"
                      f"  p50 {f['latency_ms'].get('p50')} ms  p99 {f['latency_ms'].get('p99')} ms",
                      file=sys.stderr)
        print("  ".join(f"{k}={v}" for k, v in ratios.items()), file=sys.stderr)
    return 1 if any(r["lost"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
