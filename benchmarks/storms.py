"""Storm scenarios for benchmarks/bench.py, and ngircd as a C baseline.

``bench.py`` imports this module and dispatches to it; run them through it:
``python benchmarks/bench.py joinstorm|loginstorm|reconnect|unbatched [options]``.

* ``unbatched``: the fan-out run at ``--rate`` (default 1,000) messages/s into
  ``-n`` (100) members, so each message is alone in its reactor turn; default
  targets ``ngircd,chatd-line,chatd-ws``, and the ratios are against ngircd.
* ``joinstorm``: ``-n`` (5,000) clients join one room, at most ``--window``
  (200) connecting at once; server CPU from the first connect until every member
  has seen a message sent after the last join (so every join notice is out).
* ``loginstorm``: ``--users`` (200) registered users log in at once, first
  with their password, then again with the resume token the first login gave;
  server CPU, wall time, peak RSS (reset between phases) and how long each
  waited for its ack.  ``busy`` refusals (the hashing queue is full) are retried
  after ``--retry`` seconds, as the clients do, and counted.
* ``reconnect``: a daemon is prepared with ``--users`` registered accounts (cheap
  argon2 parameters: resume never hashes) and ``--rooms`` rooms with
  ``--scrollback`` messages each, then stopped and started again on the same
  data with its default limits (only the argon2 parameters stay cheap).
  ``--probes`` clients already back chat in their own room while ``-n``
  clients (the registered ones resume with their token, the rest are guests)
  reconnect at random moments within ``--spread`` seconds, from addresses
  spread over 127.x.y.z (``--per-address`` clients each), and rejoin their room.
  A client is back when the ack of its join came after its whole scrollback.
  The probes' round trips (send to own echo) measure the reactor's lag.

Every figure is one JSON line per run, as for ``fanout`` and ``idle``.
"""

import os
import random
import re
import selectors
import socket
import time

SCENARIOS = ("unbatched", "joinstorm", "loginstorm", "reconnect")
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
PASSWORD = "storm-password-1"
TOKEN_RE = re.compile(rb'"token":"([^"]+)"')
PROBE_RE = re.compile(rb'"text":"probe (\d+)"')
PING_RE = re.compile(rb'"request":"ping".*"id":(\d+)')
# Argon2 parameters for accounts made only to be resumed (set-up cost, not measured).
CHEAP_ARGON2 = ["--argon2-time-cost", "1", "--argon2-memory-cost", "1024"]


# -- ngircd, the C baseline ------------------------------------------------------------
# The "ngircd" target lives in benchmarks/irc_bench.py (its config has an operator
# whose clients set user mode F, exempt from ngircd's flood throttling).


# -- arguments ---------------------------------------------------------------------------

def add_arguments(p) -> None:
    g = p.add_argument_group("storm scenarios (benchmarks/storms.py)")
    g.add_argument("--users", type=int, default=0,
                   help="loginstorm: registered users (200); reconnect: registered clients "
                        "(default half of -n)")
    g.add_argument("--rooms", type=int, default=100, help="reconnect: rooms")
    g.add_argument("--scrollback", type=int, default=50, help="reconnect: messages per room")
    g.add_argument("--spread", type=float, default=5.0,
                   help="reconnect: seconds over which the clients come back")
    g.add_argument("--per-address", type=int, default=20,
                   help="reconnect, loginstorm: clients per source address (127.x.y.z)")
    g.add_argument("--probe-interval", type=float, default=0.25,
                   help="reconnect: seconds between one probe's messages")
    g.add_argument("--window", type=int, default=200,
                   help="joinstorm: connections being set up at once")
    g.add_argument("--backlog", type=int, default=0,
                   help="chatd targets: listen backlog of the bench's endpoint (0: the "
                        "daemon's default)")
    g.add_argument("--retry", type=float, default=0.5,
                   help="loginstorm: seconds before a 'busy' login is sent again")


def check_args(p, args, argv) -> None:
    """Defaults that depend on the scenario (only where the option was left alone)."""
    given = set(argv)

    def unset(*names):
        return not any(a == n or a.startswith(n + "=") for a in given for n in names)

    if args.scenario == "unbatched":
        if not args.rate:
            args.rate = 1000
        if unset("--targets"):
            args.targets = ["ngircd", "chatd-line", "chatd-ws"]
    if args.scenario in ("joinstorm", "loginstorm", "reconnect") and unset("--targets"):
        args.targets = ["chatd-line"]
    if args.scenario == "joinstorm" and unset("-n", "--clients"):
        args.clients = 5000
    if args.scenario == "reconnect" and unset("-n", "--clients"):
        args.clients = 10000
    if args.scenario == "loginstorm" and not args.users:
        args.users = 200
    if args.scenario == "reconnect" and not args.users:
        args.users = args.clients // 2
    if args.scenario in ("joinstorm", "loginstorm", "reconnect"):
        for t in args.targets:
            if not t.startswith("chatd-line"):
                p.error(f"{args.scenario} drives chatd-line targets only, not {t!r}")


# -- small helpers ----------------------------------------------------------------------------

def _bench():
    import bench  # bench.py registers itself under this name when run as a script
    return bench


def source_address(i: int, per_address: int) -> str:
    """127.0.0.2, 127.0.0.3, ...: ``per_address`` clients on each, like distinct hosts."""
    n = 2 + i // max(1, per_address)
    return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def reset_peak_rss(pid: int) -> None:
    """Start the kernel's peak-RSS (VmHWM) count again from the current RSS."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def runnable_wait(pid: int) -> float:
    """Seconds the server's threads were ready to run but waited for a CPU (schedstat):
    on a shared machine, what other processes took from the server's core."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
    except OSError:
        pass
    return total / 1e9


def percentiles_s(values) -> dict:
    """p50/p90/p99/max of seconds, as milliseconds."""
    values = sorted(values)
    if not values:
        return {}
    n = len(values)

    def pick(q):
        return round(1000 * values[min(n - 1, int(q * n))], 1)

    return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99),
            "max": round(1000 * values[-1], 1), "samples": n}


class Client:
    """One JSON-lines client of chatd: a script of requests and what it waits for."""

    __slots__ = ("sock", "index", "buf", "state", "t_start", "t_done", "nick", "token",
                 "room", "history", "retries", "due", "probe", "rtts", "lags", "source")

    def __init__(self, index, nick, room=None, token=None, source=None):
        self.sock = None
        self.index = index
        self.buf = b""
        self.state = "waiting"
        self.t_start = self.t_done = None
        self.nick = nick
        self.token = token
        self.room = room
        self.history = 0
        self.retries = 0
        self.due = 0.0
        self.probe = False
        self.rtts = None
        self.lags = None
        self.source = source


class Loop:
    """A selectors loop over Clients; ``on_line(client, line)`` sees each complete line."""

    def __init__(self, port: int, on_line, on_closed=None):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.on_line = on_line
        self.on_closed = on_closed
        self.open = 0

    def connect(self, c: Client, first: bytes) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if c.source:
            sock.bind((c.source, 0))
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        c.sock = sock
        c.buf = first  # sent once connected
        c.state = "connecting"
        c.t_start = time.monotonic()
        self.sel.register(sock, WRITE, c)
        self.open += 1

    def send(self, c: Client, data: bytes) -> None:
        try:
            c.sock.sendall(data)
        except OSError:
            self.close(c, "send failed")

    def close(self, c: Client, why: str = "") -> None:
        if c.sock is None:
            return
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        c.sock = None
        self.open -= 1
        if why and self.on_closed is not None:
            self.on_closed(c, why)

    def poll(self, timeout: float) -> int:
        events = self.sel.select(timeout)
        for key, mask in events:
            c = key.data
            if c.sock is None:
                continue
            if c.state == "connecting":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.close(c, f"connect: {os.strerror(err)}")
                    continue
                self.sel.modify(c.sock, READ, c)
                first, c.buf = c.buf, b""
                c.state = "open"
                self.send(c, first)
                continue
            try:
                data = c.sock.recv(1 << 18)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                self.close(c, "closed by server: " + c.buf[-200:].decode(errors="replace"))
                continue
            buf = c.buf + data
            end = buf.rfind(b"\n")
            if end < 0:
                c.buf = buf
                continue
            c.buf = buf[end + 1:]
            on_line = self.on_line
            for line in buf[:end].split(b"\n"):
                on_line(c, line)
                if c.sock is None:
                    break
        return len(events)

    def close_all(self):
        for key in list(self.sel.get_map().values()):
            self.close(key.data)
        self.sel.close()


def _json(**req) -> bytes:
    return _bench()._json_req(**req) + b"\n"


def start_chatd(target, args, chatd_args=(), data=None, lift_limits=True):
    b = _bench()
    return b.Server(target, args, args.server_cpu, [*args.chatd_arg, *chatd_args],
                    args.logdir, data=data, lift_limits=lift_limits)


def _stats_since(pid, before, t0, t1) -> dict:
    after = _bench().proc_stats(pid)
    cpu = after["cpu"] - before["cpu"]
    return {"server_cpu_s": round(cpu, 2), "wall_s": round(t1 - t0, 2),
            "server_wait_s": round(runnable_wait(pid) - before.get("wait", 0.0), 2),
            "server_peak_rss_kib": after["peak_rss_kib"]}


def _stats_now(pid) -> dict:
    out = _bench().proc_stats(pid)
    out["wait"] = runnable_wait(pid)
    return out


# -- join storm ---------------------------------------------------------------------------------

def run_joinstorm(target, args, run_no) -> dict:
    b = _bench()
    base, tree = b.split_target(target, args.chatd_trees)
    server = start_chatd(target, args)
    swarm = b.Swarm(b.TARGETS[base][0], server.port, args.clients, args.clients,
                    f"j{run_no}n", sources=args.sources or 1, window=args.window)
    try:
        before = _stats_now(server.pid)
        t0 = time.monotonic()
        connect_s = swarm.connect_all(args.timeout)
        swarm.sync(args.timeout)
        result = {"scenario": "joinstorm", "target": target, "run": run_no,
                  "clients": args.clients, "chatd_tree": str(tree),
                  "connect_join_s": round(connect_s, 2)}
        result.update(_stats_since(server.pid, before, t0, time.monotonic()))
        result["server_ms_per_join"] = round(1000 * result["server_cpu_s"] / args.clients, 3)
    finally:
        swarm.close()
        server.stop()
    return result


# -- login storm --------------------------------------------------------------------------------

def _register_all(port, users, prefix, window, timeout) -> dict:
    """Register ``users`` accounts (set-up, not measured): nick -> resume token."""
    tokens = {}
    clients = [Client(i, f"{prefix}{i}") for i in range(users)]

    def on_line(c, line):
        if b'"request":"register"' in line:
            m = TOKEN_RE.search(line)
            tokens[c.nick] = m.group(1).decode() if m else None
            c.state = "done"
            loop.close(c)
        elif b'"type":"error"' in line:
            raise SystemExit(f"registering {c.nick}: {line[:300]!r}")

    def on_closed(c, why):
        raise SystemExit(f"registering {c.nick}: {why}")

    loop = Loop(port, on_line, on_closed)
    deadline = time.monotonic() + timeout
    nxt = 0
    while len(tokens) < users:
        while nxt < users and loop.open < window:
            c = clients[nxt]
            loop.connect(c, b"/json\n" + _json(type="nick", nick=c.nick)
                         + _json(type="register", password=PASSWORD))
            nxt += 1
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(tokens)} of {users} registered in {timeout}s")
        loop.poll(0.2)
    loop.close_all()
    return tokens


def _login_wave(port, pid, clients, make_request, retry, timeout) -> dict:
    """Every client connects at once and sends its login; measured until the last ack."""
    refused = {"busy": 0, "other": 0}
    waits = []
    tokens = {}

    def on_line(c, line):
        if b'"type":"ack"' in line and (b'"request":"login"' in line
                                         or b'"request":"resume"' in line):
            m = TOKEN_RE.search(line)
            tokens[c.nick] = m.group(1).decode() if m else None
            waits.append(time.monotonic() - c.t_start)
            c.state = "done"
            loop.close(c)
        elif b'"type":"error"' in line:
            if b'"code":"busy"' in line:
                refused["busy"] += 1
                c.retries += 1
                c.due = time.monotonic() + retry * (0.5 + random.random())
                c.state = "retry"
            else:
                refused["other"] += 1
                c.state = "failed"
                loop.close(c)

    dropped = []
    loop = Loop(port, on_line, lambda c, why: dropped.append(why))
    reset_peak_rss(pid)
    before = _stats_now(pid)
    t0 = time.monotonic()
    for c in clients:
        loop.connect(c, b"/json\n" + make_request(c))
    deadline = t0 + timeout
    while loop.open:
        now = time.monotonic()
        if now > deadline:
            break
        loop.poll(0.05)
        now = time.monotonic()
        for c in clients:
            if c.state == "retry" and c.due <= now:
                c.state = "open"
                loop.send(c, make_request(c))
    t1 = time.monotonic()
    out = _stats_since(pid, before, t0, t1)
    undone = sum(1 for c in clients if c.state != "done")
    loop.close_all()
    out.update(logged_in=len(waits), not_logged_in=undone, busy_refusals=refused["busy"],
               other_refusals=refused["other"], dropped=len(dropped),
               retried_clients=sum(1 for c in clients if c.retries),
               ack_wait_ms=percentiles_s(waits),
               server_ms_per_login=round(1000 * out["server_cpu_s"] / max(1, len(waits)), 3))
    if dropped:
        out["dropped_why"] = dropped[:3]
    return out, tokens


def run_loginstorm(target, args, run_no) -> dict:
    b = _bench()
    base, tree = b.split_target(target, args.chatd_trees)
    n = args.users
    lifts = ["--register-per-addr", str(n + 10), "--register-per-minute", str(n + 10)]
    server = start_chatd(target, args, lifts)
    prefix = f"ls{run_no}u"
    result = {"scenario": "loginstorm", "target": target, "run": run_no, "users": n,
              "chatd_tree": str(tree)}
    try:
        t = time.monotonic()
        _register_all(server.port, n, prefix, min(50, n), args.timeout)
        result["register_s"] = round(time.monotonic() - t, 2)
        per = args.per_address

        def clients():
            return [Client(i, f"{prefix}{i}", source=source_address(i, per)) for i in range(n)]

        pw, tokens = _login_wave(
            server.port, server.pid, clients(),
            lambda c: _json(type="login", nick=c.nick, password=PASSWORD),
            args.retry, args.timeout)
        result["password"] = pw
        time.sleep(1.0)  # let the server close the first wave's connections
        rs, _ = _login_wave(
            server.port, server.pid, clients(),
            lambda c: _json(type="resume", nick=c.nick, token=tokens.get(c.nick) or "x"),
            args.retry, args.timeout)
        result["resume"] = rs
        result["lost"] = pw["not_logged_in"] + rs["not_logged_in"]
    finally:
        server.stop()
    return result


# -- reconnect storm ---------------------------------------------------------------------------

def _prepare(port, args, prefix) -> dict:
    """Accounts with resume tokens and rooms with scrollback, in the first daemon's life."""
    tokens = _register_all(port, args.users, prefix, 400, args.timeout)
    # One writer per room says the scrollback (a guest: the rooms stay unkept).
    writers = [Client(r, f"{prefix}w{r}", room=f"#storm{r}") for r in range(args.rooms)]
    acked = {}

    def on_line(c, line):
        if b'"request":"message"' in line:
            acked[c.index] = acked.get(c.index, 0) + 1
            if acked[c.index] == args.scrollback:
                loop.close(c)
        elif b'"type":"error"' in line:
            raise SystemExit(f"writing scrollback: {line[:300]!r}")

    loop = Loop(port, on_line, lambda c, why: None)
    for c in writers:
        lines = [b"/json\n", _json(type="nick", nick=c.nick), _json(type="join", room=c.room)]
        lines += [_json(type="message", room=c.room, text=f"scrollback {k} of {c.room}")
                  for k in range(args.scrollback)]
        loop.connect(c, b"".join(lines))
    deadline = time.monotonic() + args.timeout
    while loop.open and time.monotonic() < deadline:
        loop.poll(0.2)
    loop.close_all()
    short = [r for r in range(args.rooms) if acked.get(r, 0) < args.scrollback]
    if short:
        raise SystemExit(f"scrollback not written in rooms {short[:5]}")
    return tokens


def run_reconnect(target, args, run_no) -> dict:
    b = _bench()
    base, tree = b.split_target(target, args.chatd_trees)
    n, users, rooms = args.clients, args.users, args.rooms
    data = os.path.join(args.logdir,
                        f"reconnect-{target.replace('@', '-')}-{run_no}-{os.getpid()}-data")
    prefix = f"rc{run_no}u"
    result = {"scenario": "reconnect", "target": target, "run": run_no, "clients": n,
              "registered": users, "rooms": rooms, "scrollback": args.scrollback,
              "spread_s": args.spread, "chatd_tree": str(tree)}
    b.raise_nofile(n + args.probes + 100)
    lifts = ["--register-per-addr", str(users + 10), "--register-per-minute", str(users + 10),
             *CHEAP_ARGON2]
    t = time.monotonic()
    first = start_chatd(target, args, lifts, data=data)
    try:
        tokens = _prepare(first.port, args, prefix)
    finally:
        first.stop()
    result["prepare_s"] = round(time.monotonic() - t, 1)

    # The restart: the same data, the default limits.
    server = start_chatd(target, args, CHEAP_ARGON2, data=data, lift_limits=False)
    per = args.per_address
    rng = random.Random(run_no)
    clients = []
    for i in range(n):
        room = f"#storm{i % rooms}"
        source = source_address(i, per)
        if i < users:
            c = Client(i, f"{prefix}{i}", room=room, token=tokens[f"{prefix}{i}"], source=source)
        else:
            c = Client(i, f"{prefix}g{i}", room=room, source=source)
        c.due = rng.uniform(0, args.spread)
        clients.append(c)
    clients.sort(key=lambda c: c.due)
    probes = [Client(n + k, f"{prefix}p{k}", room="#stormprobes",
                     source=source_address(n + per * k, per)) for k in range(args.probes)]
    back, refused, dropped = [], [], []
    t_zero = [0.0]

    def on_line(c, line):
        if b'"type":"ping"' in line:
            loop.send(c, b"\n")  # proof of life: a long storm outlasts --ping-interval
            return
        if c.probe:
            if b'"type":"message"' in line and b'"from":"%s"' % c.nick.encode() in line:
                m = PROBE_RE.search(line)
                if m:
                    c.rtts.append((time.monotonic_ns() - int(m.group(1))) / 1e9)
            elif b'"request":"ping"' in line:
                m = PING_RE.search(line)
                if m:
                    c.lags.append((time.monotonic_ns() - int(m.group(1))) / 1e9)
            elif b'"request":"join"' in line:
                c.state = "chatting"
            return
        if b'"history":true' in line:
            c.history += 1
        elif b'"request":"join"' in line:
            c.t_done = time.monotonic()
            back.append(c)
            c.state = "back"
        elif b'"type":"error"' in line:
            refused.append(line[:200].decode(errors="replace"))

    loop = Loop(server.port, on_line, lambda c, why: dropped.append((c.index, why)))
    try:
        for c in probes:
            c.probe = True
            c.rtts = []
            c.lags = []
            loop.connect(c, b"/json\n" + _json(type="nick", nick=c.nick)
                         + _json(type="join", room=c.room))
        deadline = time.monotonic() + 30
        while any(c.state != "chatting" for c in probes):
            if time.monotonic() > deadline:
                raise SystemExit("the probes did not get in")
            loop.poll(0.1)
        before = _stats_now(server.pid)
        reset_peak_rss(server.pid)
        gen0 = os.times()
        t0 = t_zero[0] = time.monotonic()
        next_probe = t0
        k = 0
        deadline = t0 + args.timeout
        while len(back) + len(dropped) < n:
            now = time.monotonic()
            if now > deadline:
                break
            while k < n and clients[k].due <= now - t0:
                c = clients[k]
                k += 1
                req = (_json(type="resume", nick=c.nick, token=c.token) if c.token
                       else _json(type="nick", nick=c.nick))
                loop.connect(c, b"/json\n" + req + _json(type="join", room=c.room))
            if now >= next_probe:
                stamp = time.monotonic_ns()
                for j, p in enumerate(probes):
                    # A session's requests are answered in order, so a ping sent
                    # behind a message would wait for the message's commit: the
                    # odd probes only ping (the reactor's lag), the even ones chat.
                    loop.send(p, _json(type="ping", id=stamp) if j % 2 else
                              _json(type="message", room=p.room, text=f"probe {stamp}"))
                next_probe += args.probe_interval
            wake = min(next_probe, t0 + clients[k].due if k < n else next_probe)
            loop.poll(max(0.0, min(0.05, wake - time.monotonic())))
        t1 = time.monotonic()
        result.update(_stats_since(server.pid, before, t0, t1))
        gen1 = os.times()
        result["gen_cpu_s"] = round(gen1.user + gen1.system - gen0.user - gen0.system, 2)
        full = [c for c in back if c.history >= args.scrollback]
        result.update(
            back=len(back), back_with_scrollback=len(full), lost=n - len(full),
            dropped=len(dropped), refusals=len(refused),
            all_back_s=round(max((c.t_done for c in back), default=t1) - t0, 2),
            rejoin_ms=percentiles_s([c.t_done - c.t_start for c in back]),
            probe_rtt_ms=percentiles_s([x for p in probes for x in p.rtts]),
            ping_rtt_ms=percentiles_s([x for p in probes for x in p.lags]),
            server_ms_per_client=round(1000 * result["server_cpu_s"] / max(1, len(back)), 3))
        if dropped:
            result["dropped_why"] = [why for _, why in dropped[:3]]
        if refused:
            result["refused_why"] = refused[:3]
    finally:
        loop.close_all()
        server.stop()
    return result


RUNS = {"joinstorm": run_joinstorm, "loginstorm": run_loginstorm, "reconnect": run_reconnect}

TABLE_COLS = {
    "unbatched": [("target", "target", "{}"), ("run", "run", "{}"),
                  ("deliveries_per_s", "deliv/s", "{:,}"), ("lost", "lost", "{}"),
                  ("latency_ms.p50", "p50 ms", "{}"), ("latency_ms.p99", "p99 ms", "{}"),
                  ("latency_ms.max", "max ms", "{}"),
                  ("server_us_per_delivery", "srv us/deliv", "{}"),
                  ("server_cpu_pct", "srv cpu%", "{}"), ("gen_cpu_pct", "gen cpu%", "{}")],
    "joinstorm": [("target", "target", "{}"), ("run", "run", "{}"), ("clients", "clients", "{:,}"),
                  ("server_cpu_s", "srv cpu s", "{}"), ("server_ms_per_join", "ms/join", "{}"),
                  ("wall_s", "wall s", "{}"), ("server_peak_rss_kib", "peak RSS KiB", "{:,}")],
    "loginstorm": [("target", "target", "{}"), ("run", "run", "{}"), ("users", "users", "{}"),
                   ("password.server_cpu_s", "pw cpu s", "{}"),
                   ("password.wall_s", "pw wall s", "{}"),
                   ("password.ack_wait_ms.p50", "pw p50 ms", "{}"),
                   ("password.ack_wait_ms.max", "pw max ms", "{}"),
                   ("password.busy_refusals", "pw busy", "{}"),
                   ("password.server_peak_rss_kib", "pw peak KiB", "{:,}"),
                   ("resume.server_cpu_s", "tok cpu s", "{}"),
                   ("resume.wall_s", "tok wall s", "{}"),
                   ("resume.ack_wait_ms.p50", "tok p50 ms", "{}"),
                   ("resume.ack_wait_ms.max", "tok max ms", "{}"),
                   ("resume.server_peak_rss_kib", "tok peak KiB", "{:,}"), ("lost", "lost", "{}")],
    "reconnect": [("target", "target", "{}"), ("run", "run", "{}"), ("clients", "clients", "{:,}"),
                  ("back_with_scrollback", "back", "{:,}"), ("dropped", "dropped", "{}"),
                  ("refusals", "refused", "{}"), ("all_back_s", "all back s", "{}"),
                  ("server_cpu_s", "srv cpu s", "{}"), ("server_wait_s", "srv wait s", "{}"),
                  ("rejoin_ms.p99", "rejoin p99 ms", "{}"),
                  ("probe_rtt_ms.p50", "probe p50 ms", "{}"),
                  ("probe_rtt_ms.p99", "probe p99 ms", "{}"),
                  ("ping_rtt_ms.p99", "ping p99 ms", "{}"),
                  ("server_peak_rss_kib", "peak RSS KiB", "{:,}")],
}
RATIO_KEYS = {
    "unbatched": ["server_us_per_delivery", "latency_ms.p50", "latency_ms.p99"],
    "joinstorm": ["server_cpu_s"],
    "loginstorm": ["password.server_cpu_s", "resume.server_cpu_s"],
    "reconnect": ["server_cpu_s", "all_back_s", "probe_rtt_ms.p99"],
}
