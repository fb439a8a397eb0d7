"""The chatd benchmark: a load generator that measures chatd against bare Twisted/Autobahn relays.

Run it from a checkout: ``python benchmarks/bench.py fanout|idle|cluster [options]``
(``cluster``: benchmarks/cluster_bench.py).
It is not part of the installed package.

It starts each server itself (pinned to one core with ``taskset``; the
generator pins itself to another), or drives one already running
(``--connect`` + ``--pid``), over the line protocol, WebSocket or IRC
(``benchmarks/irc_bench.py``: ``chatd-irc`` against ngircd):

* ``fanout``: N clients join one room, S of them send M messages each,
  unthrottled or at a total ``--rate``; every message carries its send time.
* ``idle``: C connections log in, join a room and sit idle; RSS per connection.

One process drives every connection through a ``selectors`` (epoll) loop on raw
sockets: receivers only count a marker with ``bytes.count``; a few "probe"
receivers also parse send times for latency.  WebSocket client framing is
written by hand (zero mask key, so masking costs nothing here).  Each run is one
JSON line on stdout; a readable table and chatd/baseline ratios follow.

The daemon runs from this checkout (the directory above ``benchmarks/``), or
from another source tree given with ``--chatd-tree NAME=PATH``: a chatd target
suffixed ``@NAME`` (``chatd-line@old``) runs that tree's code, so two commits
are measured back to back in one batch.
"""

import argparse
import json
import os
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import formats_bench  # the chatd-pb target (chatd.protobuf.v1)
import irc_bench  # benchmarks/, on sys.path as this script's directory
import storms  # the storm scenarios and the ngircd baseline (benchmarks/storms.py)

HERE = Path(__file__).resolve().parent  # benchmarks/: the bare relays live here too
PROJECT = HERE.parent  # the checkout whose chatd runs unless --chatd-tree says otherwise
MARK = b"~~"  # ends every benchmark message; counted, never parsed, by most receivers
TOKEN_RE = re.compile(rb"@(\d+):(\d+):(\d+)~~")
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
RECV = 1 << 18
WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
now_ns = time.monotonic_ns


# -- what each kind of server expects on the wire ---------------------------------

def ws_client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame; the all-zero mask key leaves the payload as is."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
    return head + b"\0\0\0\0" + payload


def _json_req(**req) -> bytes:
    return json.dumps(req, separators=(",", ":")).encode()


class Dialect:
    """How one client of one kind of server logs in, talks, and knows it is ready."""

    websocket = False
    subprotocol = None  # bytes: the Sec-WebSocket-Protocol to ask for
    # What ends each message and is counted; a binary format needs one longer than
    # MARK, which its other bytes (a timestamp's) can hold by chance.
    mark = MARK
    echo = True  # the server also delivers a sender's own message to it
    ready_mark = None  # bytes that only our own successful join produces

    def login(self, nick: str, room: str) -> bytes:
        return b""

    def say(self, text: bytes) -> bytes:
        raise NotImplementedError

    def say_in(self, room: str, text: bytes) -> bytes:
        """``say`` for a protocol that names the room in every message (IRC)."""
        return self.say(text)

    def pong(self, data: bytes) -> bytes:
        """The answer to idle traffic that holds a ping."""
        return b"\n"


class ChatdText(Dialect):
    ready_mark = b"* now talking in "

    def login(self, nick, room):
        return f"/nick {nick}\n/join {room}\n".encode()

    def say(self, text):
        return text + b"\n"


class ChatdJsonLines(Dialect):
    ready_mark = b'"request":"join"'

    def login(self, nick, room):
        return (b"/json\n" + _json_req(type="nick", nick=nick) + b"\n"
                + _json_req(type="join", room=room) + b"\n")

    def say(self, text):
        return b'{"type":"message","text":"' + text + b'"}\n'


class ChatdWebSocket(Dialect):
    websocket = True
    ready_mark = b'"request":"join"'

    def login(self, nick, room):
        return (ws_client_frame(_json_req(type="nick", nick=nick))
                + ws_client_frame(_json_req(type="join", room=room)))

    def say(self, text):
        return ws_client_frame(b'{"type":"message","text":"' + text + b'"}')


class BareLine(Dialect):
    echo = False

    def say(self, text):
        return text + b"\n"


class BareWebSocket(Dialect):
    websocket = True
    echo = False

    def say(self, text):
        return ws_client_frame(text)


# target name -> (dialect, how to start it: "chatd" or a benchmarks/ script + args)
TARGETS = {
    "chatd-line": (ChatdText(), "chatd", "line"),
    "chatd-jsonl": (ChatdJsonLines(), "chatd", "line"),
    "chatd-ws": (ChatdWebSocket(), "chatd", "ws"),
    "bare-line": (BareLine(), ["line_broadcaster.py"], "line"),
    "bare-ws": (BareWebSocket(), ["ws_broadcaster.py"], "ws"),
    "bare-ws-prepared": (BareWebSocket(), ["ws_broadcaster.py", "--prepared"], "ws"),
}
BASELINE_OF = {"chatd-line": "bare-line", "chatd-jsonl": "bare-line", "chatd-ws": "bare-ws"}
TARGETS.update(formats_bench.TARGETS)
BASELINE_OF.update(formats_bench.BASELINE_OF)
# chatd-irc and ngircd (benchmarks/irc_bench.py); how: a function of (port, logdir, conns)
TARGETS.update(irc_bench.TARGETS)
BASELINE_OF.update(irc_bench.BASELINE_OF)


# -- the server under test ----------------------------------------------------------

def split_target(target: str, trees: dict) -> tuple[str, Path]:
    """``chatd-line@old`` -> (``chatd-line``, the tree named old); no suffix: this checkout."""
    base, _, name = target.partition("@")
    return base, (trees[name] if name else PROJECT)


def parse_tree(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` (named after its directory) for --chatd-tree."""
    name, sep, path = spec.partition("=")
    if not sep:
        path = spec
        name = Path(spec).resolve().name
    return name, Path(path).resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stats(pid: int) -> dict:
    """CPU seconds so far, current and peak RSS in KiB, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICK
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                status[key] = int(value.split()[0])
    return {"cpu": cpu, "rss_kib": status.get("VmRSS", 0), "peak_rss_kib": status.get("VmHWM", 0)}


class Server:
    """A target started by the bench, pinned to a core; stopped with SIGTERM."""

    def __init__(self, target: str, args, cpu: str | None, chatd_args=(), logdir=None,
                 data=None, lift_limits=True):
        base, tree = split_target(target, args.chatd_trees)
        dialect, how, transport = TARGETS[base]
        self.port = free_port()
        if how == "chatd":
            listen = f"tcp:{self.port}:interface=127.0.0.1"
            if getattr(args, "backlog", 0):
                listen += f":backlog={args.backlog}"
            line = listen if transport == "line" else "none"
            ws = listen if transport == "ws" else "none"
            self.logfile = os.path.join(logdir, f"{target}-{self.port}.log")
            # A data directory per server: trees at different schema versions
            # must not share (an older chatd refuses a newer database).
            data = data or os.path.join(logdir, f"{target}-{self.port}-data")
            irc = ["--irc", f"tcp:{self.port}:interface=127.0.0.1"] if transport == "irc" else []
            cmd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                   "-n", "--pidfile=", "--logfile", self.logfile, "chatd",
                   "--line", line, "--ws", ws, *irc, "--data-dir", data,
                   *(chatd_limit_args(args, tree) if lift_limits else ()), *chatd_args,
                   *getattr(args, "tree_args", {}).get(target.partition("@")[2], ())]
        elif callable(how):
            cmd = how(self.port, logdir, max(args.connections, args.clients))
        else:
            script = Path(args.baselines) / how[0]
            cmd = [sys.executable, str(script), str(self.port), *how[1:]]
        if cpu is not None:
            cmd = ["taskset", "-c", cpu, *cmd]
        env = dict(os.environ)
        # The chatd tree comes first, ahead of any chatd installed in this Python.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree),
                                                          env.get("PYTHONPATH")]))
        self.tree = tree
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, cwd=logdir)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{target} did not start: {' '.join(cmd)}")
                time.sleep(0.05)
        time.sleep(0.2)  # let it settle before its start-up RSS is read

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def chatd_limit_args(args, tree: Path = PROJECT) -> list:
    """Only the limits a load test must lift: flood control and connection counts
    (and, in trees that have them, the per-address connect and room-creation rates:
    every bench client comes from 127.0.0.1)."""
    conns = max(getattr(args, "connections", 0), getattr(args, "clients", 0)) + 100
    out = ["--rate", "1000000", "--burst", "1000000"]
    if conns > 100:
        out += ["--max-per-ip", str(conns), "--max-connections", str(max(conns, 20000))]
    limits = (tree / "chatd" / "limits.py").read_text(encoding="utf-8")
    if "connects_per_minute" in limits:
        out += ["--connects-per-minute", str(max(conns, 1000) * 10)]
    if "new_rooms_per_minute" in limits:
        out += ["--new-rooms-per-minute", str(max(conns, 1000))]
    return out


# -- connections ------------------------------------------------------------------------

class Conn:
    __slots__ = ("sock", "index", "stage", "buf", "out", "got", "tilde", "probe", "tail",
                 "lat", "room", "closed", "left", "seq", "sender", "mtail")

    def __init__(self, sock, index, room):
        self.sock = sock
        self.index = index
        self.room = room
        self.stage = "connecting"
        self.buf = b""
        self.out = b""
        self.got = 0
        self.tilde = False
        self.mtail = b""  # a long mark's start at the end of the last read
        self.probe = False
        self.tail = b""
        self.lat = None
        self.closed = False
        self.left = 0
        self.seq = 0
        self.sender = False


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard > 0 else want,
                                                        hard))
        except (ValueError, OSError):
            pass


class Swarm:
    """Many client connections to one server, set up and synced in one event loop."""

    def __init__(self, dialect: Dialect, port: int, count: int, room_size: int,
                 prefix: str, sources: int = 1, window: int = 200, slow: int = 0):
        self.dialect = dialect
        self.port = port
        self.count = count
        self.room_size = room_size
        self.prefix = prefix
        self.sources = sources
        self.window = window
        self.slow_from = count - slow  # the last ``slow`` members will not read
        self.sel = selectors.DefaultSelector()
        self.conns = []
        raise_nofile(count)

    def room_of(self, i: int) -> str:
        return f"#bench{i // self.room_size}"

    def _open(self, i: int) -> Conn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if i >= self.slow_from:
            # A small window, as over a real network: loopback would otherwise
            # buffer megabytes in the kernel before the server sees any backpressure.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if self.sources > 1:
            sock.bind((f"127.0.0.{2 + i % self.sources}", 0))
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        conn = Conn(sock, i, self.room_of(i))
        self.sel.register(sock, WRITE, conn)
        return conn

    def _advance(self, c: Conn, data: bytes | None) -> None:
        """Move one connection through connect, WebSocket handshake, login, ready."""
        d = self.dialect
        if c.stage == "connecting":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise SystemExit(f"connect failed: {os.strerror(err)}")
            self.sel.modify(c.sock, READ, c)
            if d.websocket:
                offer = (b"Sec-WebSocket-Protocol: %s\r\n" % d.subprotocol
                         if d.subprotocol else b"")
                c.sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                               b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n%s"
                               b"Sec-WebSocket-Version: 13\r\n\r\n" % (self.port, WS_KEY, offer))
                c.stage = "upgrading"
                return
            c.stage = "login"
            data = b""
        if data is None:
            return
        if c.stage == "ready":
            return  # the room's traffic (join notices in a storm): not kept
        c.buf += data
        if c.stage == "upgrading":
            end = c.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not c.buf.startswith(b"HTTP/1.1 101"):
                raise SystemExit(f"WebSocket upgrade refused: {c.buf[:200]!r}")
            c.buf = c.buf[end + 4:]
            c.stage = "login"
            data = b""
        if c.stage == "login" and data is not None:
            login = d.login(f"{self.prefix}{c.index}", c.room)
            if login:
                c.sock.sendall(login)
            c.stage = "joining"
        if c.stage == "joining":
            if d.ready_mark is None or d.ready_mark in c.buf:
                c.stage = "ready"
                c.buf = b""
            elif len(c.buf) > 1 << 20:
                c.buf = c.buf[-4096:]

    def connect_all(self, timeout: float) -> float:
        """Open and log in every connection, at most ``window`` in flight; seconds taken."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        pending = 0
        ready = 0
        nxt = 0
        while ready < self.count:
            while nxt < self.count and pending < self.window:
                self.conns.append(self._open(nxt))
                nxt += 1
                pending += 1
            if time.monotonic() > deadline:
                raise SystemExit(f"only {ready} of {self.count} connections ready in {timeout}s")
            for key, mask in self.sel.select(0.5):
                c = key.data
                data = None
                if mask & READ:
                    data = self._recv(c)
                    if data is None:
                        continue
                was = c.stage
                self._advance(c, data)
                if c.stage == "ready" and was != "ready":
                    ready += 1
                    pending -= 1
        return time.monotonic() - t0

    def _recv(self, c: Conn):
        try:
            data = c.sock.recv(RECV)
        except (BlockingIOError, InterruptedError):
            return None
        except ConnectionError:
            data = b""
        if not data:
            raise SystemExit(f"server closed connection {c.index} during set-up: {c.buf[-300:]!r}")
        return data

    def sync(self, timeout: float) -> None:
        """Prove every member is in its room: its first member says SYNC until all saw it."""
        rooms = {}
        for c in self.conns:
            rooms.setdefault(c.room, []).append(c)
        waiting = {c for c in self.conns}
        say = self.dialect.say_in
        deadline = time.monotonic() + timeout
        last = 0.0
        while waiting:
            now = time.monotonic()
            if now > deadline:
                raise SystemExit(f"{len(waiting)} connections never saw the sync message")
            if now - last > 0.5:
                last = now
                for members in rooms.values():
                    if any(m in waiting for m in members):
                        members[0].sock.sendall(say(members[0].room, b"SYNC"))
                        if not self.dialect.echo:
                            waiting.discard(members[0])
            for key, mask in self.sel.select(0.1):
                c = key.data
                data = self._recv(c)
                if data is None:
                    continue
                buf = c.buf[-8:] + data
                c.buf = buf[-8:]
                if b"SYNC" in buf:
                    waiting.discard(c)
        for c in self.conns:
            c.buf = b""

    def close(self):
        for c in self.conns:
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()
        self.sel.close()


# -- the fan-out run ------------------------------------------------------------------------

def run_fanout(swarm: Swarm, args, server_pid: int | None) -> dict:
    conns = swarm.conns
    dialect = swarm.dialect
    senders = conns[:args.senders]
    slow = conns[len(conns) - args.slow:] if args.slow else []
    readers = [c for c in conns if c not in slow]
    for i, c in enumerate(readers):
        c.probe = i % max(1, len(readers) // args.probes) == 0
        c.lat = [] if c.probe else None
    for c in slow:
        swarm.sel.unregister(c.sock)  # never read: the server must drop them, not stall
    for c in senders:
        c.sender = True
        c.left = args.messages
    total_msgs = len(senders) * args.messages
    expected = 0
    for c in readers:
        expected += total_msgs if dialect.echo or not c.sender else total_msgs - args.messages
    mark = dialect.mark
    keep = len(mark) - 1 if mark != MARK else 0
    pad = b"x" * max(0, args.size - 22 - len(mark))
    say = dialect.say_in

    def compose(c, n, t):
        parts = []
        i = c.index
        for _ in range(n):
            parts.append(say(c.room, b"%s@%d:%d:%d%s" % (pad, i, c.seq, t, mark)))
            c.seq += 1
        c.left -= n
        return b"".join(parts)

    sel = swarm.sel
    select = sel.select
    got = 0
    unthrottled = not args.rate
    for c in senders:
        sel.modify(c.sock, READ | WRITE if unthrottled else READ, c)
    srv0 = proc_stats(server_pid) if server_pid else None
    gen0 = os.times()
    t_start = now_ns()
    t_last = t_start
    last_progress = time.monotonic()
    interval = 1e9 / args.rate if args.rate else 0
    sent_total = 0
    batch = args.batch
    while got < expected:
        if unthrottled:
            timeout = 0.2
        else:
            due_at = t_start + sent_total * interval
            timeout = max(0.0, (due_at - now_ns()) / 1e9) if sent_total < total_msgs else 0.2
        events = select(timeout)
        t = now_ns()
        for key, mask in events:
            c = key.data
            if mask & READ:
                try:
                    data = c.sock.recv(RECV)
                except (BlockingIOError, InterruptedError):
                    data = None
                except ConnectionError:
                    data = b""
                if data is not None:
                    if not data:
                        c.closed = True
                        sel.unregister(c.sock)
                        continue
                    if keep:
                        buf = c.mtail + data
                        n = buf.count(mark)
                        c.mtail = b"" if buf.endswith(mark) else buf[-keep:]
                    else:
                        n = data.count(MARK)
                        if c.tilde and data[0] == 126:
                            n += 1
                        c.tilde = data[-1] == 126
                    if n:
                        c.got += n
                        got += n
                        t_last = t
                        if c.probe:
                            buf = c.tail + data
                            end = 0
                            lat = c.lat
                            for m in TOKEN_RE.finditer(buf):
                                lat.append(t - int(m.group(3)))
                                end = m.end()
                            c.tail = buf[end:][-64:]
            if mask & WRITE:
                if not c.out and c.left:
                    c.out = compose(c, min(batch, c.left), t)
                if c.out:
                    try:
                        sent = c.sock.send(c.out)
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                    c.out = c.out[sent:]
                if not c.out and not c.left:
                    sel.modify(c.sock, READ, c)
        if not unthrottled and sent_total < total_msgs:
            due = min(total_msgs, int((t - t_start) / interval) + 1)
            while sent_total < due:
                c = senders[sent_total % len(senders)]
                if c.left:
                    c.sock.sendall(compose(c, 1, t))
                sent_total += 1
        if events:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > args.quiet:
            break
    wall = (t_last - t_start) / 1e9
    gen1 = os.times()
    srv1 = proc_stats(server_pid) if server_pid else None
    slow_dropped = 0
    for c in slow:
        c.sock.settimeout(5)
        try:
            while c.sock.recv(RECV):
                pass
            slow_dropped += 1  # end of stream: the server closed it
        except ConnectionError:
            slow_dropped += 1
        except TimeoutError:
            pass
    lat = sorted(x for c in readers if c.probe for x in c.lat)
    result = {
        "deliveries": got,
        "expected": expected,
        "lost": expected - got,
        "closed_readers": sum(1 for c in readers if c.closed),
        "seconds": round(wall, 4),
        "deliveries_per_s": round(got / wall) if wall > 0 else 0,
        "latency_ms": percentiles(lat),
        "gen_cpu_s": round((gen1.user + gen1.system) - (gen0.user + gen0.system), 3),
    }
    result["gen_cpu_pct"] = round(100 * result["gen_cpu_s"] / wall, 1) if wall else 0
    if args.slow:
        result["slow_readers_dropped"] = slow_dropped
    if srv0:
        cpu = srv1["cpu"] - srv0["cpu"]
        result.update(server_cpu_s=round(cpu, 3),
                      server_cpu_pct=round(100 * cpu / wall, 1) if wall else 0,
                      server_us_per_delivery=round(1e6 * cpu / got, 3) if got else None,
                      server_peak_rss_kib=srv1["peak_rss_kib"])
    return result


def percentiles(values) -> dict:
    if not values:
        return {}
    n = len(values)

    def pick(q):
        return round(values[min(n - 1, int(q * n))] / 1e6, 3)

    return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99),
            "max": round(values[-1] / 1e6, 3), "samples": n}


def run_idle(swarm: Swarm, args, server_pid: int | None) -> dict:
    """Hold the connections for ``--hold`` seconds, answering pings, then read RSS."""
    sel = swarm.sel
    deadline = time.monotonic() + args.hold
    while time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            c = key.data
            try:
                data = c.sock.recv(RECV)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionError:
                data = b""
            if not data:
                c.closed = True
                sel.unregister(c.sock)
                continue
            if swarm.dialect.websocket:
                for payload in ws_pings(data):
                    c.sock.sendall(ws_client_frame(payload, 0xA))
            elif b"PING" in data:
                c.sock.sendall(swarm.dialect.pong(data))
    return {"closed": sum(1 for c in swarm.conns if c.closed)}


def ws_pings(data: bytes):
    """Payloads of the ping frames in a chunk of server frames (idle traffic: small)."""
    i = 0
    while i + 2 <= len(data):
        op, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n = struct.unpack_from("!H", data, i)[0]
            i += 2
        elif n == 127:
            n = struct.unpack_from("!Q", data, i)[0]
            i += 8
        if op == 0x9:
            yield data[i:i + n]
        i += n


# -- one run, many runs, the report -------------------------------------------------------------

def one_run(target: str, args, run_no: int) -> dict:
    base, tree = split_target(target, args.chatd_trees)
    dialect = TARGETS[base][0]
    server = None
    if args.connect:
        host, _, port = args.connect.rpartition(":")
        port, pid = int(port), args.pid
    else:
        server = Server(target, args, args.server_cpu, args.chatd_arg, args.logdir)
        port, pid = server.port, server.pid
    idle = args.scenario == "idle"
    count = args.connections if idle else args.clients
    # Rooms for chatd and IRC servers; the bare relays have none.
    room_size = args.room_size if idle and not isinstance(TARGETS[base][1], list) else count
    sources = args.sources or (1 + count // 20000)
    swarm = Swarm(dialect, port, count, room_size, f"b{os.getpid() % 1000}r{run_no}n",
                  sources=sources, slow=0 if idle else args.slow,
                  window=getattr(dialect, "window", 200))
    try:
        before = proc_stats(pid) if pid else None
        connect_s = swarm.connect_all(args.timeout)
        swarm.sync(args.timeout)
        result = {"scenario": args.scenario, "target": target, "run": run_no,
                  "connections": count, "connect_join_s": round(connect_s, 3)}
        if server is not None and TARGETS[base][1] == "chatd":
            result["chatd_tree"] = str(tree)
        if idle:
            result.update(room_size=room_size)
            result.update(run_idle(swarm, args, pid))
            if pid:
                after = proc_stats(pid)
                result.update(server_start_rss_kib=before["rss_kib"],
                              server_rss_kib=after["rss_kib"],
                              server_peak_rss_kib=after["peak_rss_kib"],
                              kib_per_connection=round(
                                  (after["rss_kib"] - before["rss_kib"]) / count, 2))
        else:
            result.update(senders=args.senders, messages=args.messages, rate=args.rate,
                          size=args.size, slow=args.slow)
            result.update(run_fanout(swarm, args, pid))
    finally:
        swarm.close()
        if server is not None:
            server.stop()
    return result


TABLE_COLS = {
    "fanout": [("target", "target", "{}"), ("run", "run", "{}"),
               ("deliveries_per_s", "deliv/s", "{:,}"), ("lost", "lost", "{}"),
               ("latency_ms.p50", "p50 ms", "{}"), ("latency_ms.p90", "p90 ms", "{}"),
               ("latency_ms.p99", "p99 ms", "{}"), ("latency_ms.max", "max ms", "{}"),
               ("server_us_per_delivery", "srv us/deliv", "{}"),
               ("server_cpu_pct", "srv cpu%", "{}"), ("gen_cpu_pct", "gen cpu%", "{}"),
               ("server_peak_rss_kib", "peak RSS KiB", "{:,}"),
               ("connect_join_s", "join s", "{}")],
    "idle": [("target", "target", "{}"), ("run", "run", "{}"), ("connections", "conns", "{:,}"),
             ("connect_join_s", "join s", "{}"), ("server_start_rss_kib", "start KiB", "{:,}"),
             ("server_rss_kib", "RSS KiB", "{:,}"), ("kib_per_connection", "KiB/conn", "{}"),
             ("closed", "closed", "{}")],
}
TABLE_COLS.update(storms.TABLE_COLS)


def _get(result, dotted):
    for part in dotted.split("."):
        if not isinstance(result, dict) or part not in result:
            return None
        result = result[part]
    return result


def table(results, scenario) -> str:
    cols = TABLE_COLS[scenario]
    rows = [[h for _, h, _ in cols]]
    for r in results:
        rows.append([("-" if _get(r, k) is None else fmt.format(_get(r, k))) for k, _, fmt in cols])
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def ratios(results, scenario) -> list:
    """chatd's median figures over its baseline's, e.g. deliveries/s 0.85 = 85% of bare.

    With --chatd-tree, each chatd target is also compared with the first tree run
    for the same target: ``chatd-line@new`` over ``chatd-line@old`` is the change.
    """
    by_target = {}
    for r in results:
        by_target.setdefault(r["target"], []).append(r)
    keys = {"fanout": ["deliveries_per_s", "server_us_per_delivery", "latency_ms.p99"],
            "idle": ["kib_per_connection"]}.get(scenario) or storms.RATIO_KEYS[scenario]
    pairs, first_of = [], {}
    for target in by_target:
        base = target.partition("@")[0]
        if base not in BASELINE_OF:
            continue
        # In a storm scenario ngircd, when it ran, is every target's bar (unbatched);
        # else each target's own baseline (the bare relay; ngircd for chatd-irc).
        baseline = ("ngircd" if scenario in storms.SCENARIOS and "ngircd" in by_target
                    else BASELINE_OF[base])
        if baseline in by_target:
            pairs.append((target, baseline))
        reference = first_of.setdefault(base, target)
        if reference != target:
            pairs.append((target, reference))
    out = []
    for target, base in pairs:
        row = {"target": target, "baseline": base}
        for k in keys:
            mine = median(_get(r, k) for r in by_target[target])
            theirs = median(_get(r, k) for r in by_target[base])
            row[k] = round(mine / theirs, 3) if mine is not None and theirs else None
        out.append(row)
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(prog="benchmarks/bench.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=["fanout", "idle", *storms.SCENARIOS])
    p.add_argument("--targets", default="bare-line,chatd-line,bare-ws,chatd-ws",
                   help=f"comma-separated, run back to back in this order: {', '.join(TARGETS)}"
                        "; a chatd target may end in @NAME to run the --chatd-tree NAME")
    p.add_argument("-n", "--clients", type=int, default=100, help="fanout: room members")
    p.add_argument("-s", "--senders", type=int, default=10, help="fanout: members who send")
    p.add_argument("-m", "--messages", type=int, default=1000, help="fanout: messages per sender")
    p.add_argument("--rate", type=float, default=0,
                   help="fanout: total messages/s over all senders (0: unthrottled)")
    p.add_argument("--size", type=int, default=48, help="fanout: bytes of message text")
    p.add_argument("--batch", type=int, default=8,
                   help="fanout, unthrottled: messages a sender writes per send()")
    p.add_argument("--slow", type=int, default=0,
                   help="fanout: members that never read (the server should drop them)")
    p.add_argument("--probes", type=int, default=10, help="receivers that measure latency")
    p.add_argument("-c", "--connections", type=int, default=10000, help="idle: connections")
    p.add_argument("--room-size", type=int, default=100, help="idle: members per room (chatd)")
    p.add_argument("--hold", type=float, default=3.0, help="idle: seconds to hold before RSS")
    p.add_argument("--sources", type=int, default=0,
                   help="source addresses 127.0.0.2.. to spread connections over "
                        "(default: one per 20,000)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of all targets, back to back")
    p.add_argument("--server-cpu", default="0", help="core for the server (taskset); '' for none")
    p.add_argument("--client-cpu", default="1", help="core for this generator; '' for none")
    p.add_argument("--chatd-arg", action="append", default=[],
                   help="extra twistd chatd option, repeatable (--chatd-arg=--send-queue=1000)")
    p.add_argument("--chatd-tree", action="append", default=[], metavar="[NAME=]PATH",
                   help="another chatd source tree (a checkout or `git worktree` of another "
                        "commit), repeatable; targets chatd-*@NAME run the daemon from it, "
                        f"first on its PYTHONPATH (default NAME: the directory's name; "
                        f"targets without @ run {PROJECT})")
    p.add_argument("--tree-arg", action="append", default=[], metavar="NAME=OPTION",
                   help="extra chatd option for the targets @NAME only, repeatable: "
                        "--chatd-tree win=. --tree-arg=win=--send-window=0.002 compares "
                        "one setting against the default in one batch")
    p.add_argument("--baselines", default=str(HERE),
                   help="directory holding the bare broadcaster scripts")
    p.add_argument("--connect", help="drive a running server at HOST:PORT instead "
                                     "(one target, given by --targets)")
    p.add_argument("--pid", type=int, help="with --connect: the server's pid, for CPU and RSS")
    p.add_argument("--timeout", type=float, default=120, help="seconds for set-up and sync")
    p.add_argument("--quiet", type=float, default=10.0,
                   help="fanout: give up on missing deliveries after this many silent seconds")
    p.add_argument("--logdir", help="keep the servers' logs here (default: a temporary directory)")
    p.add_argument("--json-only", action="store_true", help="print only the JSON lines")
    storms.add_arguments(p)
    args = p.parse_args(argv)
    args.targets = [t for t in args.targets.split(",") if t]
    args.chatd_trees = {}
    for spec in args.chatd_tree:
        name, path = parse_tree(spec)
        if not name or name in args.chatd_trees:
            p.error(f"--chatd-tree {spec!r}: give each tree a distinct NAME=PATH")
        if not (path / "chatd" / "tap.py").is_file():
            p.error(f"--chatd-tree {spec!r}: {path} has no chatd/tap.py")
        args.chatd_trees[name] = path
    args.tree_args = {}
    for spec in args.tree_arg:
        name, sep, option = spec.partition("=")
        if not sep or name not in args.chatd_trees or not option.startswith("--"):
            p.error(f"--tree-arg {spec!r}: NAME=--option=value, NAME given by --chatd-tree")
        args.tree_args.setdefault(name, []).append(option)
    for t in args.targets:
        base, _, name = t.partition("@")
        if base not in TARGETS:
            p.error(f"unknown target {t!r}; choose from {', '.join(TARGETS)}")
        if name and (TARGETS[base][1] != "chatd" or name not in args.chatd_trees):
            p.error(f"target {t!r}: @NAME needs a chatd target and --chatd-tree NAME=PATH")
    if args.connect and len(args.targets) != 1:
        p.error("--connect drives one server: give exactly one --targets")
    if args.senders > args.clients:
        p.error("more senders than clients")
    args.probes = max(1, min(args.probes, args.clients))
    args.server_cpu = args.server_cpu or None
    storms.check_args(p, args, argv)
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["cluster"]:  # two nodes joined by Redis against one: cluster_bench.py
        sys.path.insert(0, str(HERE))
        import cluster_bench
        return cluster_bench.main(argv[1:])
    args = parse_args(argv)
    if args.client_cpu:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpu.split(",")})
    results = []
    with tempfile.TemporaryDirectory(prefix="chatd-bench-") as tmp:
        args.logdir = args.logdir or tmp
        for run_no in range(1, args.repeat + 1):
            for target in args.targets:
                run = storms.RUNS.get(args.scenario, one_run)
                result = run(target, args, run_no)
                results.append(result)
                print(json.dumps(result), flush=True)
    summary = ratios(results, args.scenario)
    if summary:
        print(json.dumps({"ratios": summary}), flush=True)
    if not args.json_only:
        print(file=sys.stderr)
        print(table(results, args.scenario), file=sys.stderr)
        for row in summary:
            print("  ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr)
    failed = [r for r in results if r.get("lost") and not r.get("slow")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.modules.setdefault("bench", sys.modules["__main__"])  # storms.py imports it as bench
    sys.exit(main())
